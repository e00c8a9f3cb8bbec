"""Turn a sweep directory into a study report: `python -m ser_lightning.report SWEEP_DIR`.

The command line only: what the report holds (results.csv, summary.csv, report.md, report.png,
speaker-bootstrap intervals, `--compare A B`) is described in `ser_lightning.reporting.study`.

    python -m ser_lightning.report SWEEP_DIR --compare model=acnt model=crnn_attn
    python -m ser_lightning.report SWEEP_DIR --compare "model=acnt features=logmel" "model=acnt features=mfcc"
    python -m ser_lightning.report SWEEP_DIR --baseline egemaps_logreg --compare baseline=none baseline=egemaps_logreg
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ser_lightning.reporting.intervals import BootstrapSettings
from ser_lightning.reporting.study import build_report, print_summary
from ser_lightning.reporting.study_baseline import BASELINES
from ser_lightning.utils.errors import exits_on_user_mistake


@exits_on_user_mistake
def main(argv: list[str] | None = None) -> None:
    """Parse the command line, build the study report of the sweep and print its summary.

    Args:
        argv: The arguments after the program name; None reads `sys.argv`.
    """
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
    parser.add_argument(
        "--allow-protocol-mismatch",
        action="store_true",
        help="report jobs measured under different protocols (corpus, labels, split rule, metrics) together",
    )
    parser.add_argument(
        "--baseline",
        choices=sorted(BASELINES),
        default=None,
        help="add a classical baseline (openSMILE features + classifier) run on the jobs' folds as "
        "configuration baseline=NAME (the jobs get baseline=none); its runs go to OUT/baseline/NAME/",
    )
    args = parser.parse_args(argv)
    runner = None
    if args.baseline:  # scikit-learn and openSMILE are loaded only when a baseline is asked for
        from ser_lightning.baseline import run_baseline as runner
    written = build_report(
        args.sweep_dir,
        args.out,
        args.metric,
        title=args.title,
        compare_configurations=tuple(args.compare) if args.compare else None,
        bootstrap=BootstrapSettings(resamples=args.resamples, seed=args.seed),
        allow_protocol_mismatch=args.allow_protocol_mismatch,
        baseline=args.baseline,
        run_baseline=runner,
    )
    print_summary(args.sweep_dir, written, args.metric)


if __name__ == "__main__":
    main()
