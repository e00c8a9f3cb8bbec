#!/usr/bin/env bash
# eval's agreement section on the recorded runs of run.sh (their best checkpoints, their own test
# split): the JS divergence and the accuracy on high- and low-agreement clips, now with 95 %
# intervals by a bootstrap over the test speakers (1000 resamples, seed 0), and what
# min_confidence=0.5 abstention catches. The point values must equal the training runs' test
# reports (results.csv): eval and train share one scoring path.
#
#   bash experiments/soft_targets_demo/run.sh             # first, once: the recorded runs
#   bash experiments/soft_targets_demo/eval_agreement.sh  # writes eval_agreement.md
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=experiments/soft_targets_demo
ROOT=${ROOT:-outputs/soft_targets_demo/corpus}
folders=()
for seed in ${SEEDS:-0 1 2}; do
for targets in hard soft; do
    ckpt=$(ls outputs/soft_targets_demo/$targets-seed$seed/checkpoints/best-*.ckpt | head -n 1)
    folder=outputs/soft_targets_demo/eval-$targets-seed$seed
    $PY -m ser_lightning.eval ckpt_path="$ckpt" +data.root="$ROOT" device=cpu hydra.run.dir="$folder" \
        | grep "annotator agreement"
    folders+=("$folder")
done
done
$PY - "$OUT/eval_agreement.md" "${folders[@]}" <<'EOF'
import json
import sys
from pathlib import Path

out, folders = Path(sys.argv[1]), sys.argv[2:]
lines = [
    "# eval's agreement section on the recorded demo runs",
    "",
    "`bash experiments/soft_targets_demo/eval_agreement.sh`: `python -m ser_lightning.eval "
    "ckpt_path=outputs/soft_targets_demo/<targets>-seed<seed>/checkpoints/best-*.ckpt "
    "+data.root=outputs/soft_targets_demo/corpus device=cpu` on each run of run.sh (its own test split, "
    "120 clips of 2 speakers). [low, high]: 95 % interval, bootstrap over the test speakers. With two "
    "test speakers a resample is both, or one of them twice: the interval only shows how far the two "
    "speakers differ, not how the score would vary over new speakers; a split with more test speakers "
    "(a larger corpus, `data.split=kfold`) is what makes it informative.",
    "",
    "The point values equal the training runs' test reports (results.md): eval and train score the "
    "test split through one path.",
    "",
    "| run | UA | JS divergence (bits) | accuracy, agreement >= 0.75 | accuracy, agreement < 0.75 | "
    "ambiguous clips abstained at 0.5 |",
    "|---|---|---|---|---|---|",
]


def cell(agreement: dict, name: str) -> str:
    value, bounds = agreement[name], agreement["intervals"]["intervals"][name]
    return "n/a" if value is None else f"{value:.3f}" + (f" [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else "")


for folder in folders:
    summary = json.loads((Path(folder) / "eval.json").read_text())
    a = summary["agreement"]
    lines.append(
        f"| {Path(folder).name.removeprefix('eval-')} | {summary['metrics']['ua']:.3f} | {cell(a, 'js_divergence')} | "
        f"{cell(a, 'accuracy_high_agreement')} ({a['high_agreement_clips']} clips) | "
        f"{cell(a, 'accuracy_low_agreement')} ({a['low_agreement_clips']} clips) | "
        f"{a['abstains_low_agreement']} of {a['low_agreement_clips']} |"
    )
out.write_text("\n".join(lines) + "\n")
print(out.read_text())
EOF
