"""Turn a sweep directory into a study report: `python -m ser_lightning.report SWEEP_DIR`.

Reads every job folder of a Hydra multirun (its overrides, job_status.json and summary.json)
and writes, next to the sweep or into --out:
- results.csv: one row per job (overrides, status, error, metrics);
- summary.csv and report.md: one row per configuration, metrics as mean ± std over the
  repeat keys (seed, data.fold, data.split_seed) with the number of finished jobs;
- report.png: the chosen metric per configuration, with the spread as error bars.
Failed and skipped jobs are listed with their errors; they never vanish from the report.

Where the jobs kept their per-clip test predictions (`test_report/predictions.csv` with each
clip's speaker), each configuration's mean UA, WA and macro-F1 also get a 95 % interval by a
bootstrap over test speakers (each fold's speakers resampled within the fold; the number of
resamples is in the report), and `--compare A B` tests whether configuration A beats B on the
same test clips: the difference of the means with a paired-bootstrap interval and the p-value of
a paired permutation test over speakers, written to comparison.json and into report.md. A and
B are `key=value` settings of the sweep's overrides, several separated by spaces:

    python -m ser_lightning.report SWEEP_DIR --compare model=acnt model=crnn_attn
    python -m ser_lightning.report SWEEP_DIR --compare "model=acnt features=logmel" "model=acnt features=mfcc"
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ser_lightning.reporting.intervals import BootstrapSettings
from ser_lightning.reporting.study import build_report, print_summary
from ser_lightning.utils.errors import exits_on_user_mistake


@exits_on_user_mistake
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep_dir", type=Path, help="a Hydra multirun folder, e.g. outputs/train/multiruns/<date>"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write the report (default: the sweep folder)"
    )
    parser.add_argument("--metric", default="test/ua", help="metric to plot (default: test/ua)")
    parser.add_argument("--title", default=None)
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        default=None,
        help="paired test of configuration A against B, each as key=value settings (e.g. model=acnt model=crnn_attn)",
    )
    parser.add_argument(
        "--resamples", type=int, default=BootstrapSettings.resamples, help="bootstrap resamples"
    )
    parser.add_argument("--seed", type=int, default=BootstrapSettings.seed, help="seed of the resampling")
    args = parser.parse_args(argv)
    written = build_report(
        args.sweep_dir,
        args.out,
        args.metric,
        title=args.title,
        compare_configurations=tuple(args.compare) if args.compare else None,
        bootstrap=BootstrapSettings(resamples=args.resamples, seed=args.seed),
    )
    print_summary(args.sweep_dir, written, args.metric)


if __name__ == "__main__":
    main()
