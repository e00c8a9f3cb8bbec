"""EmoBox's published RAVDESS folds (data.folds=emobox) and the experiment that runs all six."""

from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from ser_lightning.data.splits import PUBLISHED_FOLDS, KFoldSplit, make_split, split_indices
from ser_lightning.reporting.study import build_report
from ser_lightning.reporting.sweep_callback import SweepReport

from .helpers.configs import compose_train
from .helpers.tables import ravdess_like_table

EMOBOX_RAVDESS = [
    {"01", "11", "20", "21"},
    {"04", "10", "12", "14"},
    {"08", "09", "19", "23"},
    {"03", "05", "07", "24"},
    {"02", "15", "16", "18"},
    {"06", "13", "17", "22"},
]


@pytest.mark.parametrize("fold", range(6))
def test_emobox_fold_tests_exactly_the_published_actors(fold):
    table = ravdess_like_table()
    split = make_split("kfold", (0.7, 0.15, 0.15), seed=42, fold=fold, folds="emobox")
    frame = table.assign(split=split(table).to_numpy())
    actors = {name: set(group["actor"]) for name, group in frame.groupby("split")}
    assert actors["test"] == EMOBOX_RAVDESS[fold]
    assert not (actors["val"] & actors["test"]) and not (actors["train"] & (actors["val"] | actors["test"]))
    assert actors["train"] | actors["val"] | actors["test"] == {f"{a:02d}" for a in range(1, 25)}
    # validation: from the other 20 actors, per gender, the same for the same seed
    described = split.describe(table)
    assert set(described["val_actors"]) == actors["val"] and 3 <= len(actors["val"]) <= 4
    assert described["folds"] == "emobox"
    again = make_split("kfold", (0.7, 0.15, 0.15), seed=42, fold=fold, folds="emobox")(table)
    assert again.equals(split(table))


def test_emobox_folds_cover_ravdess_once():
    folds = KFoldSplit(given_folds="emobox").folds(ravdess_like_table())
    assert [set(f) for f in folds] == EMOBOX_RAVDESS
    assert [set(f) for f in PUBLISHED_FOLDS["emobox"]] == EMOBOX_RAVDESS
    assert sum(len(f) for f in folds) == 24


def test_given_folds_as_lists_and_numbers():
    table = ravdess_like_table(8)
    split = make_split(
        "kfold", (0.7, 0.15, 0.15), 0, fold=1, num_folds=2, folds=[[1, 2, 3, 4], ["05", "06", "07", "08"]]
    )
    assert set(table["actor"][split_indices(split(table))["test"]]) == {"05", "06", "07", "08"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"folds": "emobox", "num_folds": 6, "table": 12}, r"actors \['20', '21'"),
        ({"folds": "emobox", "num_folds": 4}, "lists 6 folds but data.num_folds=4"),
        ({"folds": "published"}, "not a published fold set"),
        ({"folds": [["01", "02"], ["02", "03"]], "num_folds": 2}, "listed in two folds"),
    ],
)
def test_bad_fold_settings_say_what_to_do(kwargs, message):
    table = ravdess_like_table(kwargs.pop("table", 24))
    with pytest.raises(ValueError, match=message):
        make_split("kfold", (0.7, 0.15, 0.15), 0, **kwargs)(table)


def test_folds_only_for_kfold():
    with pytest.raises(ValueError, match="only applies to data.split=kfold"):
        make_split("actor", (0.7, 0.15, 0.15), 0, folds="emobox")


def test_emobox_experiment_sweeps_six_folds_and_reports():
    cfg = compose_train(["experiment=emobox_folds"], Path("/tmp/unused"))
    assert (cfg.data.split, cfg.data.folds) == ("kfold", "emobox")
    assert cfg.hydra.sweeper.params["data.fold"] == "range(6)"
    callback = OmegaConf.to_container(cfg.hydra.callbacks.sweep_report)
    assert callback["_target_"] == "ser_lightning.reporting.sweep_callback.SweepReport"


def test_sweep_report_callback_prints_mean_and_std_over_folds(tmp_path, capsys):
    for fold, ua in enumerate([0.4, 0.5, 0.6]):
        job = tmp_path / str(fold)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- experiment=emobox_folds\n- data.fold={fold}\n")
        (job / "summary.json").write_text(f'{{"metrics": {{"test/ua": {ua}}}}}')
    SweepReport().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    assert "0.500 ± 0.100" in capsys.readouterr().out
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary["runs"].tolist() == [3]
    assert build_report(tmp_path)["markdown"].is_file()
