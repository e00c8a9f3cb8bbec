"""Every option of every config group composes to the same resolved config as the snapshot.

The snapshot (config_snapshot.json next to this file) holds the resolved configs that the
entry points compose for each option of each group, and for each experiment on each corpus
(experiments override the corpus's audio settings). A reorganisation of conf/ (shared base
configs, interpolations) must leave every one of them identical, key order included (it is
the order printed and saved with a run).

Regenerate it only when a config is meant to change:
    PYTHONPATH=. .venv/bin/python -m tests.test_config_snapshot
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from ser_lightning.utils.config import CONFIG_DIR

from .helpers.configs import compose_train

SNAPSHOT = Path(__file__).with_name("config_snapshot.json")

# A fixed, run-independent output folder, so that paths derived from it are the same every time.
RUN_DIR = Path("/snapshot-run")

# Groups whose options are picked with `group=option`; hydra is left out with the hydra key.
TRAIN_GROUPS = (
    "data",
    "features",
    "model",
    "model/optimizer",
    "model/scheduler",
    "augmentation",
    "trainer",
    "logger",
    "callbacks",
    "calibration",
    "debug",
    "experiment",
    "hparams_search",
    "paths",
)


def group_options(group: str) -> list[str]:
    """The options of a config group: its yaml files, less the ones named `_*` (shared bases)."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


Cases = dict[str, tuple[str, list[str]]]  # case name -> (entry point config, overrides)


def single_option_cases() -> Cases:
    """Each entry point with its defaults, train with each option of each group, baseline with each classifier."""
    cases: Cases = {entry: (entry, []) for entry in ("train", "eval", "predict", "export")}
    for group in TRAIN_GROUPS:
        for option in group_options(group):
            cases[f"train {group}={option}"] = ("train", [f"{group}={option}"])
    for option in group_options("data"):
        cases[f"eval data={option}"] = ("eval", [f"data={option}"])
    cases["baseline"] = ("baseline", [])
    for option in group_options("classifier"):
        cases[f"baseline classifier={option}"] = ("baseline", [f"classifier={option}"])
    return cases


def experiment_on_corpus_cases() -> Cases:
    """Each experiment on each corpus: experiments override the corpus's audio settings."""
    cases: Cases = {}
    for experiment, data in itertools.product(group_options("experiment"), group_options("data")):
        overrides = [f"experiment={experiment}", f"data={data}"]
        cases["train " + " ".join(overrides)] = ("train", overrides)
    return cases


def resolved(config_name: str, overrides: list[str]) -> dict:
    """The composed config, every interpolation resolved, without the hydra key."""
    cfg = compose_train(overrides, RUN_DIR, config_name=config_name)
    with open_dict(cfg):
        # the run's own folders and sweep settings (some mandatory only inside a run)
        del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=True)


def composed(cases: Cases) -> dict[str, dict]:
    return {name: resolved(entry, overrides) for name, (entry, overrides) in cases.items()}


@pytest.fixture(scope="module")
def snapshot() -> dict[str, dict]:
    return json.loads(SNAPSHOT.read_text())


def differences(cases: Cases, snapshot: dict[str, dict]) -> list[str]:
    """The cases whose resolved config differs from the snapshot's, and how."""
    found = []
    for name, config in composed(cases).items():
        if config != snapshot[name]:
            found.append(f"{name} (values)")
        elif json.dumps(config) != json.dumps(snapshot[name]):
            found.append(f"{name} (key order)")
    return found


def test_every_snapshotted_case_still_exists(snapshot):
    # an option that disappears (or a new one) shows here, by name
    names = {**single_option_cases(), **experiment_on_corpus_cases()}
    assert sorted(names) == sorted(snapshot)


def test_each_option_composes_as_snapshotted(snapshot):
    assert not differences(single_option_cases(), snapshot)


@pytest.mark.slow
def test_each_experiment_on_each_corpus_composes_as_snapshotted(snapshot):
    assert not differences(experiment_on_corpus_cases(), snapshot)


@pytest.mark.parametrize("features", group_options("features"))
def test_every_feature_set_takes_its_sample_rate_from_data(features):
    # the sample rate is set once, in data; a feature config with its own number would let the
    # decoded audio and the features disagree when data.sample_rate is changed
    cfg = compose_train([f"features={features}", "data.sample_rate=11025"], RUN_DIR)
    assert cfg.features.sample_rate == 11025


if __name__ == "__main__":
    # one case per line: a changed config shows as a changed line
    lines = [
        f"{json.dumps(name)}: {json.dumps(config)}"
        for name, config in composed({**single_option_cases(), **experiment_on_corpus_cases()}).items()
    ]
    SNAPSHOT.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"wrote {SNAPSHOT}")
