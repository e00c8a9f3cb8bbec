"""Checkpoints: the stored contract, loading them back, and refusing files that would run code."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from ser_lightning import __version__
from ser_lightning.checkpoint import CHECKPOINT_FORMAT_VERSION, RECORD_KEY, CheckpointError, read_checkpoint
from ser_lightning.labels import EMOTIONS
from ser_lightning.model import SERModel
from ser_lightning.module import SERModule

from .helpers.configs import compose_train
from .helpers.models import tiny_module

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def module() -> SERModule:
    torch.manual_seed(0)
    return tiny_module()


def save(module: SERModule, path: Path, **changes) -> Path:
    """A checkpoint laid out as Lightning writes it, with the ser_lightning record."""
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        RECORD_KEY: {"format_version": CHECKPOINT_FORMAT_VERSION, "data": None, "split": None},
    }
    checkpoint.update(changes)
    torch.save(checkpoint, path)
    return path


def with_hparam(module: SERModule, key: str, value) -> dict:
    hparams = dict(module.hparams)
    hparams[key] = value
    return hparams


def test_a_checkpoint_rebuilds_the_same_model(module, tmp_path):
    path = save(module, tmp_path / "model.ckpt")
    loaded = SERModule.load_from_checkpoint(path)
    assert isinstance(loaded, SERModule) and not loaded.training
    assert loaded.model.labels == list(EMOTIONS) and loaded.model.audio == module.model.audio
    waves = torch.randn(3, module.model.audio.num_samples)
    with torch.inference_mode():
        expected = module.model.probabilities({"waveform": waves})
        assert torch.equal(loaded.model.probabilities({"waveform": waves}), expected)
        # the scoring model alone, as predict, serve and export load it: the same probabilities
        scoring = SERModel.load_from_checkpoint(path)
        assert type(scoring) is SERModel and not scoring.training
        assert torch.equal(scoring.probabilities({"waveform": waves}), expected)


def test_the_scoring_model_loads_without_lightning_or_the_lightning_module(module, tmp_path):
    """The checkpoint layer and SERModel never import the LightningModule: module.py depends on
    them, not the other way round. A fresh interpreter loads the scoring model of a checkpoint
    and still has imported neither ser_lightning.module nor Lightning."""
    path = save(module, tmp_path / "model.ckpt")
    code = f"""
import sys
from ser_lightning.model import SERModel
loaded = SERModel.load_from_checkpoint({str(path)!r})
imported = [m for m in ("ser_lightning.module", "pytorch_lightning", "lightning_fabric") if m in sys.modules]
assert not imported, f"loading the scoring model imported {{imported}}"
print(",".join(loaded.labels))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ",".join(EMOTIONS)


class Payload:
    """Unpickling this calls Path.touch(marker): what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_payload_in_a_checkpoint_does_not_run(module, tmp_path):
    marker = tmp_path / "payload_ran"
    path = save(module, tmp_path / "evil.ckpt", payload=Payload(marker))
    # the payload is live: unsafe loading runs it
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(CheckpointError, match=r"evil\.ckpt.*refused by safe loading"):
        SERModule.load_from_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "role,target",
    [
        ("features", "os.makedirs"),  # a function outside the project
        ("features", "ser_lightning.utils.files.os.makedirs"),  # a trusted prefix walking to os
        ("net", "subprocess.Popen"),  # a class outside the trusted packages
        ("net", "ser_lightning.data.datamodule.SERDataModule"),  # a project class of the wrong kind
    ],
)
def test_config_targets_that_would_run_code_are_refused(module, tmp_path, role, target):
    marker = tmp_path / "made_by_target"
    config = {"_target_": target, "name": str(marker)}
    if target == "os.makedirs":  # the config is live: Hydra would run it
        instantiate(config)
        assert marker.exists()
        marker.rmdir()
    path = save(module, tmp_path / "target.ckpt", hyper_parameters=with_hparam(module, role, config))
    with pytest.raises(CheckpointError, match=rf"{role}\._target_=.*is refused"):
        SERModule.load_from_checkpoint(path)
    assert not marker.exists()


def test_nested_targets_are_checked_too(module, tmp_path):
    net = dict(module.hparams["net"], helper={"_target_": "os.makedirs", "name": str(tmp_path / "x")})
    path = save(module, tmp_path / "nested.ckpt", hyper_parameters=with_hparam(module, "net", net))
    with pytest.raises(CheckpointError, match=r"net\.helper\._target_='os.makedirs' is refused"):
        SERModule.load_from_checkpoint(path)


def test_files_that_are_not_ser_lightning_checkpoints_get_clear_errors(module, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nowhere.ckpt")
    text = tmp_path / "notes.ckpt"
    text.write_text("just text")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(text)
    torch.save(module.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        read_checkpoint(tmp_path / "weights.pt")
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"lr": 0.1}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not a ser_lightning checkpoint.*lack"):
        read_checkpoint(tmp_path / "other.ckpt")
    newer = save(
        module, tmp_path / "newer.ckpt", **{RECORD_KEY: {"format_version": CHECKPOINT_FORMAT_VERSION + 1}}
    )
    with pytest.raises(CheckpointError, match="Update ser_lightning"):
        read_checkpoint(newer)


@pytest.mark.parametrize(
    "record,has,advice",
    [
        ({"format_version": 1, "ser_lightning_version": "0.0.9"}, "format 1", "Retrain the model"),
        ({"format_version": 0}, "format 0", "Retrain the model"),
        ({"format_version": "2"}, "format '2'", "Retrain the model"),
        (None, "no format version", "Retrain the model"),
        (
            {"format_version": CHECKPOINT_FORMAT_VERSION + 1},
            f"format {CHECKPOINT_FORMAT_VERSION + 1}",
            "Update",
        ),
    ],
    ids=["older", "zero", "not a number", "no record", "newer"],
)
def test_an_older_or_unknown_format_version_stops_with_one_line_that_says_what_to_do(
    module, tmp_path, record, has, advice
):
    path = save(module, tmp_path / "versioned.ckpt", **{RECORD_KEY: record})
    for load in (read_checkpoint, SERModel.load_from_checkpoint, SERModule.load_from_checkpoint):
        with pytest.raises(CheckpointError) as err:
            load(path)
        message = str(err.value)
        assert "\n" not in message
        assert f"versioned.ckpt' is a checkpoint of {has}" in message
        assert (
            f"this ser_lightning ({__version__}) reads checkpoint format {CHECKPOINT_FORMAT_VERSION} only"
            in message
        )
        assert advice in message
    if record and "ser_lightning_version" in record:  # which version to go back to
        assert "load it with the ser_lightning version that wrote it ('0.0.9')" in message


class FailsWhilePickled:
    """Stands for a write that dies halfway: pickling it raises after earlier bytes went out."""

    def __reduce__(self):
        raise OSError("No space left on device")


def test_an_interrupted_checkpoint_write_keeps_the_previous_file(tmp_path):
    from ser_lightning.checkpoint_writing import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "weights": torch.arange(1000.0)}, path)
    before = path.read_bytes()
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"epoch": 2, "weights": torch.arange(1000.0), "extra": FailsWhilePickled()}, path)
    assert path.read_bytes() == before  # the complete epoch-1 file, not a truncated epoch-2 one
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no staging file left
    assert torch.load(path, weights_only=True)["epoch"] == 1
    io.save_checkpoint({"epoch": 3}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 3}


# --------------------------------------------------------------------------- stored configs are data
def mkdir_interpolation(marker: Path, resolver: str = "oc.create") -> str:
    """An OmegaConf interpolation whose resolution makes a node that Hydra would instantiate."""
    if resolver == "oc.decode":
        return f"${{oc.decode:'{{_target_: os.mkdir, _args_: [{marker}]}}'}}"
    return f"${{oc.create:{{_target_: os.mkdir, _args_: ['{marker}']}}}}"


def with_nested(hparams: dict, role: str, key: str, value) -> dict:
    return dict(hparams, **{role: dict(hparams[role], **{key: value})})


def crafted_hyper_parameters(module: SERModule, vector: str, marker: Path) -> tuple[dict, str]:
    """Hyper-parameters carrying one attack, and the key path the refusal must name."""
    hparams = dict(module.hparams)
    mkdir = {"_target_": "os.mkdir", "_args_": [str(marker)]}
    if vector == "oc.create":
        return with_nested(hparams, "features", "f_min", mkdir_interpolation(marker)), r"features\.f_min"
    if vector == "oc.decode":
        return (
            with_nested(hparams, "features", "f_min", mkdir_interpolation(marker, "oc.decode")),
            r"features\.f_min",
        )
    if vector == "oc.env":
        return with_nested(hparams, "features", "f_min", "${oc.env:HOME}"), r"features\.f_min"
    if vector == "oc.select":
        return with_nested(hparams, "net", "dropout", "${oc.select:net.dropout,0.1}"), r"net\.dropout"
    if vector == "in a list":
        channels = [4, mkdir_interpolation(marker)]
        return with_nested(hparams, "net", "cnn_channels", channels), r"net\.cnn_channels\[1\]"
    if vector == "in a label":
        return dict(hparams, labels=["neutral", mkdir_interpolation(marker)]), r"labels\[1\]"
    if vector == "escaped":  # resolves to the text of an interpolation, which a later resolve would run
        return with_nested(hparams, "features", "f_min", "\\${oc.env:HOME}"), r"features\.f_min"
    if vector == "_args_":
        return with_nested(hparams, "net", "_args_", [mkdir]), r"net\._args_\[0\]\._target_"
    if vector == "_partial_":
        return with_nested(hparams, "net", "_partial_", "yes"), r"net\._partial_"
    if vector == "_convert_":
        return with_nested(hparams, "features", "_convert_", "everything"), r"features\._convert_"
    if vector == "_recursive_":
        return with_nested(hparams, "features", "_recursive_", [mkdir]), r"features\._recursive_"
    if vector == "net as a list":
        return dict(hparams, net=[dict(hparams["net"])]), r"'net'"
    if vector == "null target":
        return with_nested(hparams, "net", "_target_", None), r"net\._target_"
    if vector == "in the record":
        raise AssertionError("handled by the caller")
    raise AssertionError(vector)


VECTORS = [
    "oc.create",
    "oc.decode",
    "oc.env",
    "oc.select",
    "in a list",
    "in a label",
    "escaped",
    "_args_",
    "_partial_",
    "_convert_",
    "_recursive_",
    "net as a list",
    "null target",
]


def test_the_interpolation_payload_is_live(tmp_path):
    """What the refusals below stop: Hydra resolves the interpolation, then builds its node."""
    marker = tmp_path / "made_by_interpolation"
    instantiate({"_target_": "builtins.dict", "f_min": mkdir_interpolation(marker)})
    assert marker.is_dir()


def load_with(loader: str, path: Path, tmp_path: Path):
    """Read a checkpoint the way each command does."""
    if loader == "SERModel.load_from_checkpoint":
        return SERModel.load_from_checkpoint(path)
    if loader == "SERModule.load_from_checkpoint":
        return SERModule.load_from_checkpoint(path)
    if loader == "eval":
        from ser_lightning.eval import evaluate

        return evaluate(
            compose_train([f"ckpt_path={path}", "device=cpu"], tmp_path / "run", config_name="eval")
        )
    if loader == "predict":
        from ser_lightning.predict import predict

        cfg = compose_train(
            [f"ckpt_path={path}", f"inputs={tmp_path}", "device=cpu"], tmp_path / "run", config_name="predict"
        )
        return predict(cfg)
    if loader == "export":
        from ser_lightning.export import export

        return export(compose_train([f"ckpt_path={path}"], tmp_path / "run", config_name="export"))
    raise AssertionError(loader)


LOADERS = ["SERModel.load_from_checkpoint", "SERModule.load_from_checkpoint", "eval", "predict", "export"]


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("vector", VECTORS)
def test_crafted_configs_are_refused_by_every_command(module, tmp_path, vector, loader):
    marker = tmp_path / "made_by_checkpoint"
    hparams, key = crafted_hyper_parameters(module, vector, marker)
    path = save(module, tmp_path / "crafted.ckpt", hyper_parameters=hparams)
    with pytest.raises(CheckpointError, match=rf"crafted\.ckpt.*{key}"):
        load_with(loader, path, tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("loader", LOADERS)
def test_interpolations_in_the_record_are_refused(module, tmp_path, loader):
    marker = tmp_path / "made_by_record"
    data = {"corpus": "ravdess", "root": mkdir_interpolation(marker)}
    record = {"format_version": CHECKPOINT_FORMAT_VERSION, "data": data, "split": None}
    path = save(module, tmp_path / "crafted.ckpt", **{RECORD_KEY: record})
    with pytest.raises(CheckpointError, match=r"crafted\.ckpt.*ser_lightning\.data\.root.*interpolation"):
        load_with(loader, path, tmp_path)
    assert not marker.exists()


@pytest.fixture
def look_alike_class(tmp_path, monkeypatch):
    """A network class of the module `ser_lightning_extra` reachable as `ser_lightning.models.Extra`."""
    source = tmp_path / "ser_lightning_extra.py"
    source.write_text(
        "import os\nimport torch\n\n"
        "class Extra(torch.nn.Module):\n"
        "    def __init__(self, marker, **kwargs):\n"
        "        super().__init__()\n"
        "        os.mkdir(marker)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import ser_lightning.models

    extra = importlib.import_module("ser_lightning_extra")
    monkeypatch.setitem(sys.modules, "ser_lightning_extra", extra)  # forgotten again after the test
    monkeypatch.setattr(ser_lightning.models, "Extra", extra.Extra, raising=False)
    return extra.Extra


@pytest.mark.parametrize("target", ["ser_lightning.models.Extra", "ser_lightning_extra.Extra"])
def test_classes_of_look_alike_modules_are_refused(module, tmp_path, look_alike_class, target):
    marker = tmp_path / "made_by_look_alike"
    net = {"_target_": target, "marker": str(marker)}
    path = save(module, tmp_path / "look_alike.ckpt", hyper_parameters=with_hparam(module, "net", net))
    with pytest.raises(CheckpointError, match=r"net\._target_=.*is refused"):
        SERModule.load_from_checkpoint(path)
    assert not marker.exists()


# --------------------------------------------------------------------------- the stored data config
def stored_data(root: Path, **changes) -> dict:
    """Data settings as CheckpointRecord stores them (resolved, no `_target_`, absolute root and cache)."""
    data = {
        "corpus": "ravdess",
        "root": str(root),
        "demo": {"num_actors": 12, "duration": 1.0, "sample_rate": 16000, "seed": 0},
        "split": "actor",
        "split_seed": 42,
        "cache_dir": str(root.parent / "cache"),
        "duration": 1.0,
    }
    data.update(changes)
    return data


def with_data(module: SERModule, path: Path, data: dict) -> Path:
    return save(module, path, **{RECORD_KEY: {"format_version": CHECKPOINT_FORMAT_VERSION, "data": data}})


@pytest.mark.parametrize("loader", ["SERModel.load_from_checkpoint", "eval", "predict"])
@pytest.mark.parametrize(
    "change,key",
    [
        ("nested target", r"ser_lightning\.data\.corpus_options\.helper\._target_"),
        ("target in a list", r"ser_lightning\.data\.vocal_channels\[0\]\._target_"),
        ("_args_", r"ser_lightning\.data\._args_"),
        ("_partial_", r"ser_lightning\.data\._partial_"),
        ("other class", r"ser_lightning\.data\._target_='os\.mkdir'"),
    ],
)
def test_stored_data_settings_hold_no_hydra_key(module, tmp_path, loader, change, key):
    marker = tmp_path / "made_by_data_config"
    mkdir = {"_target_": "os.mkdir", "_args_": [str(marker)]}
    data = stored_data(tmp_path / "data" / "demo")
    if change == "nested target":
        data["corpus_options"] = {"helper": mkdir}
    elif change == "target in a list":
        data["vocal_channels"] = [mkdir]
    elif change == "_args_":
        data["_args_"] = [mkdir]
    elif change == "_partial_":
        data["_partial_"] = True
    else:
        data = mkdir
    path = with_data(module, tmp_path / "crafted.ckpt", data)
    with pytest.raises(CheckpointError, match=rf"crafted\.ckpt.*{key}.*is refused"):
        load_with(loader, path, tmp_path)
    assert not marker.exists()


@pytest.mark.slow  # a fresh interpreter: about 20 s on two loaded cores
def test_the_default_eval_command_runs_nothing_from_the_data_config(module, tmp_path):
    """`python -m ser_lightning.eval ckpt_path=x.ckpt`, the command the README shows."""
    marker = tmp_path / "made_by_eval"
    data = stored_data(
        tmp_path / "data" / "demo", corpus_options={"helper": {"_target_": "os.mkdir", "path": str(marker)}}
    )
    path = with_data(module, tmp_path / "x.ckpt", data)
    done = subprocess.run(
        [sys.executable, "-m", "ser_lightning.eval", f"ckpt_path={path}", "device=cpu"],
        cwd=REPO,
        env=dict(os.environ, SER_LIGHTNING_ROOT=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "ser_lightning.data.corpus_options.helper._target_" in done.stderr
    assert not marker.exists()


def eval_cfg(path: Path, tmp_path: Path, *overrides: str):
    return compose_train(
        [f"ckpt_path={path}", "device=cpu", *overrides], tmp_path / "run", config_name="eval"
    )


def test_eval_does_not_read_or_write_where_a_checkpoint_says(module, tmp_path):
    """A stored root outside this machine's paths.data_dir is not used unless the user names it:
    here it would even generate the demo corpus there."""
    from ser_lightning.eval import evaluate

    elsewhere = tmp_path / "elsewhere" / "demo"
    path = with_data(module, tmp_path / "moved.ckpt", stored_data(elsewhere))
    with pytest.raises(
        ValueError, match=r"moved\.ckpt.*corpus at '.*elsewhere/demo'.*paths\.data_dir"
    ) as err:
        evaluate(eval_cfg(path, tmp_path))
    assert f"python -m ser_lightning.eval ckpt_path={path} +data.root={elsewhere}" in str(err.value)
    assert not (tmp_path / "elsewhere").exists()
    assert not (tmp_path / "cache").exists()  # the stored cache_dir


def test_the_stored_root_and_cache_folder_give_way_to_this_machines_paths(tmp_path):
    from ser_lightning.data.evaluation_data import eval_data_config

    paths = {"data_dir": str(tmp_path / "data"), "cache_dir": str(tmp_path / "my_cache")}
    inside = stored_data(tmp_path / "data" / "demo", cache_dir="/somewhere/else")
    data, source = eval_data_config(None, {"data": inside}, "m.ckpt", paths)
    assert source == "checkpoint" and data["root"] == inside["root"]
    assert data["cache_dir"] == paths["cache_dir"]  # never the record's

    outside = stored_data(tmp_path / "corpora" / "demo")
    with pytest.raises(ValueError, match=r"m\.ckpt.*outside"):
        eval_data_config(None, {"data": outside}, "m.ckpt", paths)
    chosen = str(tmp_path / "corpora" / "demo")
    data, source = eval_data_config({"root": chosen}, {"data": outside}, "m.ckpt", paths)
    assert data["root"] == chosen and source == "checkpoint with overrides"
    data, _ = eval_data_config({"cache_dir": "/mine"}, {"data": inside}, "m.ckpt", paths)
    assert data["cache_dir"] == "/mine"  # the user's own choice

    # a label CSV the record names must lie in the corpus folder or the data folder
    folder = stored_data(
        tmp_path / "data" / "mine", corpus="folder", corpus_options={"csv": str(tmp_path / "other.csv")}
    )
    with pytest.raises(ValueError, match=r"corpus_options\.csv.*other\.csv.*outside"):
        eval_data_config(None, {"data": folder}, "m.ckpt", paths)
    folder["corpus_options"] = {"csv": "../../other.csv"}
    with pytest.raises(ValueError, match=r"corpus_options\.csv"):
        eval_data_config(None, {"data": folder}, "m.ckpt", paths)
    folder["corpus_options"] = {"csv": "labels.csv"}
    assert eval_data_config(None, {"data": folder}, "m.ckpt", paths)[0]["corpus_options"] == {
        "csv": "labels.csv"
    }
    data, _ = eval_data_config(
        {"corpus_options": {"csv": str(tmp_path / "other.csv")}}, {"data": folder}, "m.ckpt", paths
    )
    assert data["corpus_options"]["csv"] == str(tmp_path / "other.csv")

    # keys build_data_module does not take are named before anything is built
    with pytest.raises(ValueError, match=r"m\.ckpt.*\['shell'\]"):
        eval_data_config(None, {"data": dict(inside, shell="rm")}, "m.ckpt", paths)
