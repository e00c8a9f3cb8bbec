"""The exported model folder: what `export` writes and predict, serve and the web page load.

```
<folder>/model.onnx        the graph (feature extraction included), its metadata inside
<folder>/model.int8.onnx   the same graph with INT8 weights (export quantize=int8)
<folder>/config.json       labels, audio settings, features, windows, calibration
<folder>/README.md         the model card (ser_lightning.reporting.model_card)
```

The file names are fixed here: config.json names no file, so nothing loaded from the folder
chooses what is read. config.json is data: it is parsed as JSON, every key and type is checked
(`check_model_config`), and its labels, audio settings and input must be the ones stored inside
model.onnx itself (`check_against_graph`), so an edited config.json cannot make the backend read
the graph's outputs under other names or cut windows of another length.

`config_from_metadata` turns the graph's metadata record (`onnx_export.onnx_metadata`) into the
config, so both hold one record. This module imports neither torch nor onnxruntime.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ser_lightning.audio_settings import AudioSettings
from ser_lightning.calibration import check_calibration
from ser_lightning.utils.errors import UserError

MODEL_FILE = "model.onnx"
INT8_MODEL_FILE = "model.int8.onnx"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
FOLDER_FORMAT = "ser_lightning-model"
FOLDER_FORMAT_VERSION = 1
PRECISIONS = ("fp32", "int8")
# the keys of the graph's metadata that config.json repeats, decoded from JSON
METADATA_KEYS = ("labels", "audio", "features", "input", "outputs", "temperature")
CONFIG_KEYS = {
    "format": str,
    "format_version": int,
    "ser_lightning_version": str,
    "checkpoint_format_version": str,
    "labels": list,
    "audio": dict,
    "features": dict,
    "input": dict,
    "outputs": list,
    "temperature": (int, float),
    "windows": dict,
    "calibration": (dict, type(None)),
    "quantized": (str, type(None)),
}
# card: the model card's facts (reporting.model_card.card_facts), shown by GET /v1/model
OPTIONAL_KEYS = {"dimension_scale": dict, "card": dict}
# the graph output of a task=dimensional|multitask model: arousal, valence and dominance on its
# corpus's scale (`dimension_scale`), after the class outputs (onnx_export.output_names)
DIMENSIONS_OUTPUT = "dimensions"


class ModelFolderError(UserError, ValueError):
    """A model folder (or .onnx file) that cannot be loaded as it is: the message says why and what to do."""


def is_model_folder(path: str | Path) -> bool:
    """Whether `path` is an exported model folder (it holds config.json and model.onnx).

    Returns:
        True for such a folder.
    """
    path = Path(path)
    return path.is_dir() and (path / CONFIG_FILE).is_file() and (path / MODEL_FILE).is_file()


def config_from_metadata(metadata: dict[str, str]) -> dict:
    """Decode a graph's metadata properties (`onnx_export.onnx_metadata`) into config fields.

    Args:
        metadata: the graph's `custom_metadata_map`.

    Returns:
        The config's fields that the graph stores, with the window settings they imply.

    Raises:
        ModelFolderError: if a field is missing or not JSON (not a ser_lightning export).
    """
    fields: dict = {
        "ser_lightning_version": metadata.get("ser_lightning_version", "unknown"),
        "checkpoint_format_version": metadata.get("checkpoint_format_version", "unknown"),
    }
    for key in (*METADATA_KEYS, "dimension_scale"):
        if key not in metadata:
            if key == "dimension_scale":
                continue
            raise ModelFolderError(
                f"the ONNX graph's metadata has no {key!r}: it was not written by python -m "
                "ser_lightning.export; export the checkpoint again"
            )
        try:
            fields[key] = json.loads(metadata[key])
        except json.JSONDecodeError as err:
            raise ModelFolderError(
                f"the ONNX graph's metadata {key!r} is not JSON ({err}); export again"
            ) from None
    duration = fields["audio"].get("duration") if isinstance(fields["audio"], dict) else None
    fields["windows"] = {
        "whole_clips": duration is None,
        "window_s": duration,
        "default_hop_s": None if duration is None else duration / 2,
    }
    return fields


def _why(where: str, message: str) -> str:
    return (
        f"{where}: {message}. config.json is written by python -m ser_lightning.export; export the "
        "checkpoint again rather than editing it"
    )


def check_model_config(config: object, where: str = CONFIG_FILE) -> dict:
    """Check a model folder's config: known keys, their types and values.

    Args:
        config: the parsed config.json.
        where: the file, for messages.

    Returns:
        The config, with its audio settings checked by AudioSettings.

    Raises:
        ModelFolderError: naming the first key that is missing, unknown or wrong.
    """
    if not isinstance(config, dict):
        raise ModelFolderError(_why(where, f"must hold a JSON object, not {type(config).__name__}"))
    unknown = sorted(set(config) - set(CONFIG_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise ModelFolderError(_why(where, f"unknown keys {unknown}"))
    for key, kind in {**CONFIG_KEYS, **OPTIONAL_KEYS}.items():
        if key not in config:
            if key in OPTIONAL_KEYS:
                continue
            raise ModelFolderError(_why(where, f"the key {key!r} is missing"))
        if not isinstance(config[key], kind) or isinstance(config[key], bool):
            raise ModelFolderError(_why(where, f"{key!r} has the wrong type ({type(config[key]).__name__})"))
    if config["format"] != FOLDER_FORMAT or config["format_version"] != FOLDER_FORMAT_VERSION:
        raise ModelFolderError(
            _why(
                where,
                f"format {config['format']!r} version {config['format_version']} is not "
                f"{FOLDER_FORMAT!r} version {FOLDER_FORMAT_VERSION}",
            )
        )
    labels = config["labels"]
    if not labels or not all(isinstance(x, str) and x for x in labels) or len(set(labels)) != len(labels):
        raise ModelFolderError(_why(where, f"'labels' must be distinct non-empty names, not {labels}"))
    known_audio = set(AudioSettings.__dataclass_fields__)
    if set(config["audio"]) - known_audio:
        raise ModelFolderError(
            _why(where, f"'audio' has unknown keys {sorted(set(config['audio']) - known_audio)}")
        )
    try:
        AudioSettings(**config["audio"])
    except (TypeError, ValueError) as err:
        raise ModelFolderError(_why(where, f"'audio' is not valid ({err})")) from None
    if config["input"].get("name") not in ("waveform", "features"):
        raise ModelFolderError(
            _why(where, f"'input.name' must be waveform or features, not {config['input'].get('name')!r}")
        )
    temperature = config["temperature"]
    if not (math.isfinite(temperature) and temperature > 0):
        raise ModelFolderError(_why(where, f"'temperature' must be a positive number, not {temperature}"))
    if config["quantized"] not in (None, "int8"):
        raise ModelFolderError(
            _why(where, f"'quantized' must be null or 'int8', not {config['quantized']!r}")
        )
    if config["calibration"] is not None:
        check_calibration(config["calibration"], where)
    return config


def read_model_config(folder: str | Path) -> dict:
    """Read and check `<folder>/config.json`.

    Returns:
        The checked config.

    Raises:
        ModelFolderError: if the file is not JSON or does not pass `check_model_config`.
    """
    path = Path(folder) / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFolderError(
            f"{path} cannot be read as JSON ({err}); export the checkpoint again"
        ) from None
    return check_model_config(config, str(path))


def check_against_graph(config: dict, graph_fields: dict, where: str) -> None:
    """Refuse a config whose labels, audio, input, outputs or dimension scale differ from the graph's own metadata.

    Args:
        config: the checked config.json.
        graph_fields: `config_from_metadata` of the graph it is read with.
        where: the config file, for the message.

    Raises:
        ModelFolderError: naming the first field that differs.
    """
    for key in ("labels", "audio", "input", "outputs", "temperature", "dimension_scale"):
        if config.get(key) != graph_fields.get(key):
            raise ModelFolderError(
                _why(
                    where,
                    f"{key!r} is {config.get(key)!r} but the graph in the same folder was exported with "
                    f"{graph_fields.get(key)!r}",
                )
            )


def model_file(folder: str | Path, precision: str = "fp32") -> Path:
    """The graph of a model folder for `precision` (fp32: model.onnx; int8: model.int8.onnx).

    Returns:
        The file's path.

    Raises:
        ModelFolderError: for an unknown precision or a folder without that graph.
    """
    if precision not in PRECISIONS:
        raise ModelFolderError(f"precision={precision!r} must be one of {PRECISIONS}")
    path = Path(folder) / (MODEL_FILE if precision == "fp32" else INT8_MODEL_FILE)
    if not path.is_file():
        raise ModelFolderError(
            f"{path} does not exist: "
            + (
                "export with quantize=int8 to write it, or use precision=fp32"
                if precision == "int8"
                else "the folder is not a complete export"
            )
        )
    return path
