"""The model card of an exported model: facts from its run, and the README.md that shows them.

`card_facts` gathers what the run recorded about the checkpoint (summary.json, and the test
report's metrics.json beside it): corpus and protocol card, test scores with their speaker
bootstrap intervals, the per-gender gap, calibration, split sizes. A fact the run did not record
is None, and the card says "not recorded": nothing is filled in. The facts go into the model
folder's config.json (`card`), which GET /v1/model returns, and `card_markdown` renders them as
README.md with YAML front matter in the Hugging Face convention (`license`, `tags`, `datasets`,
`metrics`, `model-index`), so both say the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ser_lightning.demo_corpus.manifest import MANIFEST_NAME

MISSING = "not recorded"
# summary.json key -> card name, in the order shown
TEST_SCORES = {"test/ua": "ua", "test/acc": "accuracy", "test/f1": "macro_f1"}
INTERVAL_NAMES = {"ua": "ua", "accuracy": "accuracy", "macro_f1": "macro_f1"}
ACTED = ("ravdess", "crema_d", "tess", "savee", "emodb", "iemocap")
LANGUAGES = {
    "ravdess": "English (North American)",
    "crema_d": "English (North American)",
    "tess": "English (Canadian)",
    "savee": "English (British)",
    "emodb": "German",
    "iemocap": "English (North American)",
    "msp_podcast": "English (podcasts)",
}


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def run_folder(ckpt_path: str | Path) -> Path:
    """The run directory of a checkpoint (the parent of its `checkpoints/` folder).

    Returns:
        The folder where train wrote summary.json and test_report/.
    """
    return Path(ckpt_path).expanduser().resolve().parent.parent


def card_facts(ckpt_path: str | Path, labels: list[str]) -> dict:
    """Collect the model card's facts from the checkpoint's run.

    Args:
        ckpt_path: the exported checkpoint, in its run's `checkpoints/` folder.
        labels: the model's emotions.

    Returns:
        Plain values: `corpus`, `protocol` (split, sizes, speaker independence, card hash),
        `test` (scores, intervals, files, speakers), `gender_gap`, `calibration`, `labels`,
        `languages`, `acted`; None for what the run did not record.
    """
    run = run_folder(ckpt_path)
    summary = _read_json(run / "summary.json") or {}
    report = _read_json(run / "test_report" / "metrics.json") or {}
    results = summary.get("test_results") or {}
    metrics = summary.get("metrics") or {}
    protocol = summary.get("protocol") or {}
    card = summary.get("protocol_card") or {}
    corpus = protocol.get("corpus") or card.get("corpus")
    # the built-in demo corpus copies RAVDESS's layout and names: its manifest says it is synthetic
    synthetic = bool(protocol.get("root")) and (Path(protocol["root"]) / MANIFEST_NAME).is_file()
    intervals = (results.get("intervals") or report.get("intervals") or {}).get("intervals") or {}
    scores = {name: metrics.get(key) for key, name in TEST_SCORES.items()}
    return {
        "checkpoint": Path(ckpt_path).name,
        "labels": list(labels),
        "corpus": corpus,
        "corpus_root": protocol.get("root"),
        "synthetic": synthetic,
        "acted": None if corpus is None else corpus in ACTED and not synthetic,
        "languages": None if synthetic or not corpus else LANGUAGES.get(corpus),
        "protocol": {
            "split": protocol.get("split") or summary.get("split"),
            "speaker_independent": protocol.get("speaker_independent"),
            "sizes": protocol.get("split_sizes") or summary.get("split_sizes"),
            "card_hash": card.get("hash"),
        },
        "test": {
            "scores": scores if any(v is not None for v in scores.values()) else None,
            "intervals": {k: intervals[k] for k in INTERVAL_NAMES if k in intervals} or None,
            "confidence": (results.get("intervals") or {}).get("confidence"),
            "files": report.get("num_files"),
            "speakers": (summary.get("speakers") or {}).get("test_speakers"),
        },
        "gender_gap": results.get("gender_gap") or report.get("gender_gap"),
        "calibration": results.get("calibration") or report.get("calibration"),
    }


def _number(value: object, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def front_matter(facts: dict) -> dict:
    """The card's YAML metadata in the Hugging Face convention.

    Returns:
        `license`, `tags`, `datasets`, `metrics` and `model-index` (with the test scores recorded).
    """
    corpus = facts.get("corpus") or "unknown"
    scores = (facts.get("test") or {}).get("scores") or {}
    results = [
        {"type": name, "value": round(float(value), 4), "name": f"test {name}"}
        for name, value in scores.items()
        if value is not None
    ]
    return {
        "license": "other",
        "library_name": "onnx",
        "tags": ["audio-classification", "speech-emotion-recognition", "onnx", "ser_lightning"],
        "datasets": [corpus],
        "metrics": ["unweighted_accuracy", "accuracy", "f1"],
        "model-index": [
            {
                "name": facts.get("checkpoint") or "model",
                "results": [
                    {
                        "task": {"type": "audio-classification", "name": "speech emotion recognition"},
                        "dataset": {"type": corpus, "name": corpus, "split": "test"},
                        "metrics": results,
                    }
                ],
            }
        ],
    }


def card_markdown(facts: dict, config: dict) -> str:
    """Render the model card (README.md) from the facts and the folder's config.

    Args:
        facts: `card_facts`.
        config: the folder's config.json (labels, audio, windows, quantisation).

    Returns:
        The README text: YAML front matter, then the card.
    """
    test = facts.get("test") or {}
    scores, intervals = test.get("scores") or {}, test.get("intervals") or {}
    protocol = facts.get("protocol") or {}
    gap, calibration = facts.get("gender_gap"), facts.get("calibration")
    rows = [
        f"| {name} | {_number(value)} | "
        + (f"{intervals[name][0]:.3f} – {intervals[name][1]:.3f}" if name in intervals else MISSING)
        + " |"
        for name, value in scores.items()
    ] or [f"| (none) | {MISSING} | {MISSING} |"]
    audio, windows = config["audio"], config["windows"]
    window = "whole clips" if windows.get("whole_clips") else f"{windows.get('window_s')} s windows"
    lines = [
        "---",
        yaml.safe_dump(front_matter(facts), sort_keys=False).rstrip(),
        "---",
        "",
        f"# Speech emotion recognition: {facts.get('checkpoint') or 'model'}",
        "",
        f"Emotions: {', '.join(config['labels'])}. Input: mono audio at {audio['sample_rate']} Hz, "
        f"scored in {window}; the feature extraction is inside `model.onnx`"
        + (" (and `model.int8.onnx`, INT8 weights)" if config.get("quantized") else "")
        + ". Load this folder with `python -m ser_lightning.predict ckpt_path=<folder> inputs=[...]` "
        "or `python -m ser_lightning.serve ckpt_path=<folder>` (onnxruntime, no torch).",
        "",
        "## Training data and protocol",
        "",
        f"- corpus: {facts.get('corpus') or MISSING} (read from {facts.get('corpus_root') or MISSING})",
        f"- split: {protocol.get('split') or MISSING} (speaker-independent: "
        f"{_number(protocol.get('speaker_independent'))}); sizes: {protocol.get('sizes') or MISSING}",
        f"- protocol card hash: {protocol.get('card_hash') or MISSING}",
        "",
        "## Test scores",
        "",
        f"On {_number(test.get('files'))} test files of {_number(test.get('speakers'))} speakers; "
        f"{_number(test.get('confidence'), 2)} intervals from a bootstrap over speakers.",
        "",
        "| metric | value | interval |",
        "|---|---|---|",
        *rows,
        "",
        "Per-gender gap (UA): "
        + (
            f"female {_number(gap.get('ua_female'))}, male {_number(gap.get('ua_male'))}, "
            f"female − male {_number(gap.get('female_minus_male'))}"
            if gap
            else MISSING
        ),
        "",
        "Calibration: "
        + (
            f"temperature {_number(calibration.get('temperature'))}, test ECE "
            f"{_number(calibration.get('ece'))} (uncalibrated {_number(calibration.get('ece_uncalibrated'))}), "
            f"NLL {_number(calibration.get('nll'))}"
            if calibration
            else MISSING
        ),
        "",
        "## Intended use and limitations",
        "",
        "- For research on speech emotion recognition and for trying the framework; not for "
        "decisions about people.",
        "- Trained on "
        + (
            "the built-in synthetic demo corpus (ser_lightning.demo_corpus: synthesised speech-like "
            "audio in RAVDESS's layout): for trying the framework, not for real voices."
            if facts.get("synthetic")
            else "acted speech: actors reading fixed sentences with a requested emotion. Spontaneous "
            "speech expresses emotion less clearly and is scored less well."
            if facts.get("acted")
            else f"{facts.get('corpus') or 'an unrecorded corpus'} (acted or not: {MISSING})."
        ),
        f"- Language: {'none (synthesised)' if facts.get('synthetic') else facts.get('languages') or MISSING}; "
        "other languages are untested.",
        f"- Speakers: {_number(test.get('speakers'))} test speakers; scores on other voices, "
        "microphones and rooms will differ.",
        "",
    ]
    return "\n".join(lines)
