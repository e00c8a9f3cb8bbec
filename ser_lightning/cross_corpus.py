"""Train on each corpus, test on every corpus: `python -m ser_lightning.cross_corpus [overrides]`.

For each corpus of `corpora` one model is trained (`ser_lightning.train`, on that corpus's own
split); then each model is scored on every other corpus of the list, every file of it
(`ser_lightning.eval`'s `evaluate` with `split=all`). All runs share one label set: the
harmonisation map of `label_map` (conf/label_map/) renames each corpus's emotions and keeps the
shared ones. The train x test matrix of UA with speaker-bootstrap intervals (the diagonal: each
training run's own test split) is written as CSV, markdown, a heatmap and JSON
(`ser_lightning.reporting.cross_corpus_matrix`) and printed. Each cell keeps the protocol card
hash of its test.

One process drives the whole matrix rather than a Hydra multirun over training corpora: every
test needs the checkpoints of all trainings, which the independent jobs of a sweep do not see,
and one folder then holds the runs, the tests and the matrix (`reuse_runs` goes on where a
stopped matrix left off). The layout: `train/<corpus>/` (training runs), `eval/<train>_on_<test>/`
(tests), `cross_corpus.{csv,md,png,json}` and `cross_corpus_ua.csv`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console

from ser_lightning.reporting.cross_corpus_matrix import MatrixCell, print_matrix, write_matrix
from ser_lightning.utils.config import CONFIG_DIR, silence_pytree_notice, to_plain
from ser_lightning.utils.errors import InvalidSetting, exits_on_user_mistake

log = logging.getLogger("ser_lightning.cross_corpus")

silence_pytree_notice()


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


def check_settings(cfg: DictConfig) -> tuple[list[str], dict[str, list[str]]]:
    """Validate `corpora`, `corpus_overrides` and `label_map`.

    Args:
        cfg: the cross_corpus config.

    Returns:
        The corpora, and the overrides of each corpus's runs (its data config first).

    Raises:
        InvalidSetting: fewer than two corpora or a repeated one, overrides of a corpus not
            listed or not a list, a corpus that is no data config and chooses none, or a
            label_map that is no option of conf/label_map.
    """
    corpora = [str(name) for name in (to_plain(cfg.get("corpora")) or [])]
    if len(corpora) < 2 or len(set(corpora)) != len(corpora):
        raise InvalidSetting(
            f"corpora={corpora} must list at least two different corpora, e.g. corpora=[ravdess,crema_d]"
        )
    extra = to_plain(cfg.get("corpus_overrides")) or {}
    if not isinstance(extra, Mapping) or set(extra) - set(corpora):
        raise InvalidSetting(
            f"corpus_overrides must map corpora of the list {corpora} to lists of overrides, e.g. "
            f"corpus_overrides.{corpora[0]}=[data.root=/data/{corpora[0]}]; got {extra}"
        )
    label_map = cfg.get("label_map")
    if label_map is not None and str(label_map) not in _options("label_map"):
        raise InvalidSetting(
            f"label_map={label_map} is not a label map of conf/label_map; choose one of "
            f"{_options('label_map')} or label_map=null (each corpus's own emotion names)"
        )
    data_configs = _options("data")
    overrides = {}
    for name in corpora:
        own = extra.get(name) or []
        if not isinstance(own, list) or not all(isinstance(o, str) for o in own):
            raise InvalidSetting(f"corpus_overrides.{name}={own!r} must be a list of overrides")
        chooses_data = any(o.split("=", 1)[0].lstrip("+~") == "data" for o in own)
        if not chooses_data and name not in data_configs:
            raise InvalidSetting(
                f"corpora: {name!r} is not a data config ({data_configs}); name one, or choose its "
                f"data config in corpus_overrides.{name}=[data=demo,...]"
            )
        label = [] if label_map is None else [f"+label_map={label_map}"]
        overrides[name] = ([] if chooses_data else [f"data={name}"]) + label + list(own)
    return corpora, overrides


def compose_entry_config(config_name: str, overrides: list[str], paths: dict, output_dir: Path) -> DictConfig:
    """Compose another entry point's config (train, eval) with this command's paths.

    Args:
        config_name: the entry point's config (conf/<config_name>.yaml).
        overrides: its overrides.
        paths: this command's resolved `paths`.
        output_dir: the run's folder (its `paths.output_dir`).

    Returns:
        The composed config.
    """
    if GlobalHydra.instance().is_initialized():
        cfg = compose(config_name=config_name, overrides=overrides)
    else:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths = OmegaConf.create({**paths, "output_dir": str(output_dir)})
    return cfg


def train_corpus(cfg: DictConfig, name: str, overrides: list[str], paths: dict, run_dir: Path) -> dict:
    """Train the model of one corpus (or reuse its finished run) and return its summary.

    Args:
        cfg: the cross_corpus config (`train_overrides`, `reuse_runs`).
        name: the corpus.
        overrides: the corpus's overrides (`check_settings`).
        paths: this command's resolved `paths`.
        run_dir: the training run's folder.

    Returns:
        The run's summary (summary.json).

    Raises:
        InvalidSetting: the run saved no best checkpoint or did not test it.
    """
    summary_path = run_dir / "summary.json"
    if not (cfg.get("reuse_runs") and summary_path.is_file()):
        from ser_lightning.train import train

        train_cfg = compose_entry_config(
            "train", [*overrides, *(to_plain(cfg.get("train_overrides")) or [])], paths, run_dir
        )
        train(train_cfg)
    else:
        log.info("%s: reusing the finished run in %s", name, run_dir)
    summary = json.loads(summary_path.read_text())
    if not summary.get("best_checkpoint") or "test/ua" not in summary.get("metrics", {}):
        raise InvalidSetting(
            f"the run trained on {name} ({run_dir}) saved no best checkpoint or was not tested; the matrix "
            "needs both: keep callbacks=default and test=true in train_overrides"
        )
    return summary


def test_on_corpus(cfg: DictConfig, ckpt_path: str, overrides: list[str], paths: dict, run_dir: Path) -> dict:
    """Score a checkpoint on every file of a corpus with eval (or reuse that test's eval.json).

    Args:
        cfg: the cross_corpus config (`eval_overrides`, `reuse_runs`).
        ckpt_path: the model.
        overrides: the test corpus's overrides (`check_settings`).
        paths: this command's resolved `paths`.
        run_dir: the test's folder.

    Returns:
        The test's summary (eval.json).
    """
    from ser_lightning.eval import evaluate

    written = run_dir / "eval.json"
    if (
        cfg.get("reuse_runs")
        and written.is_file()
        and json.loads(written.read_text())["checkpoint"] == ckpt_path
    ):
        return json.loads(written.read_text())
    data = to_plain(compose_entry_config("train", overrides, paths, run_dir).data)
    eval_cfg = compose_entry_config(
        "eval",
        [f"ckpt_path={ckpt_path}", "split=all", *(to_plain(cfg.get("eval_overrides")) or [])],
        paths,
        run_dir,
    )
    with open_dict(eval_cfg):
        eval_cfg.data = data
    _, summary = evaluate(eval_cfg)
    return summary


def cross_corpus(cfg: DictConfig, console: Console | None = None) -> list[MatrixCell]:
    """Train on each corpus, test each model on every corpus, write and print the matrix.

    Args:
        cfg: the cross_corpus config.
        console: where the progress and the matrix are printed; a new rich Console when None.

    Returns:
        The matrix's cells, row by row (train corpus), in the order of `corpora`.

    Raises:
        InvalidSetting: bad settings (`check_settings`), or runs that end with different label sets.
    """
    console = console or Console()
    corpora, overrides = check_settings(cfg)
    paths = to_plain(cfg.paths)
    output_dir = Path(paths["output_dir"])
    started, steps, step = time.perf_counter(), len(corpora) ** 2, 0

    def announce(what: str) -> None:
        nonlocal step
        step += 1
        minutes = (time.perf_counter() - started) / 60
        console.rule(f"cross-corpus {step}/{steps} ({minutes:.1f} min): {what}")

    summaries: dict[str, dict] = {}
    for name in corpora:
        announce(f"train on {name}")
        summaries[name] = train_corpus(cfg, name, overrides[name], paths, output_dir / "train" / name)
    label_sets = {name: tuple(summary["labels"]) for name, summary in summaries.items()}
    if len(set(label_sets.values())) > 1:
        raise InvalidSetting(
            f"the runs classify different label sets ({label_sets}); the matrix needs one: choose a "
            "label_map (conf/label_map) or set data.labels in train_overrides"
        )
    cells = []
    for train in corpora:
        summary = summaries[train]
        for test in corpora:
            if test == train:  # the run's own test split
                cells.append(
                    MatrixCell.from_scores(
                        train,
                        test,
                        "test",
                        summary["metrics"]["test/ua"],
                        (summary.get("test_results") or {}).get("intervals"),
                        summary["split_sizes"]["test"],
                        summary["protocol_card"],
                        Path(summary["output_dir"]) / "summary.json",
                    )
                )
                continue
            announce(f"test the {train} model on {test}")
            folder = output_dir / "eval" / f"{train}_on_{test}"
            scored = test_on_corpus(cfg, summary["best_checkpoint"], overrides[test], paths, folder)
            cells.append(
                MatrixCell.from_scores(
                    train,
                    test,
                    "all",
                    scored["metrics"]["ua"],
                    scored.get("intervals"),
                    scored["metrics"]["num_files"],
                    scored["protocol_card"],
                    folder / "eval.json",
                )
            )
    label_names = next(iter(label_sets.values()))
    label_map = summaries[corpora[0]]["protocol_card"].get("label_map") or {}
    written = write_matrix(cells, corpora, label_names, label_map, output_dir)
    print_matrix(cells, corpora, label_names, console)
    console.print(f"written: {', '.join(str(p) for p in written.values())}")
    return cells


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="cross_corpus")
@exits_on_user_mistake
def main(cfg: DictConfig) -> None:
    """Run `cross_corpus` as the Hydra entry point."""
    OmegaConf.resolve(cfg.paths)
    cross_corpus(cfg)


if __name__ == "__main__":
    main()
