#!/usr/bin/env bash
# EmoBox-style protocol on the demo corpus: two models on EmoBox's six RAVDESS test folds, mean ± std
# over folds with speaker-bootstrap intervals, a paired comparison, calibration before and after
# temperature scaling, and the robustness table of one checkpoint.
#
#   bash experiments/emobox_demo/run.sh                          # 8 epochs per fold (the recorded run)
#   EPOCHS=25 bash experiments/emobox_demo/run.sh                # the default training budget
#   bash experiments/emobox_demo/run.sh data=ravdess             # RAVDESS itself (data/ravdess)
#   EVAL_ARGS="+data.root=/elsewhere/demo" bash ... data.root=/elsewhere/demo   # a corpus outside data/
#
# Writes the sweep under outputs/emobox_demo/multiruns/<date>/ and into experiments/emobox_demo/:
# report.md, summary.csv, results.csv, report.png, comparison.json (the study report),
# calibration.md (ECE per fold before/after), robustness/ (robustness.csv, robustness.png, eval.json).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=experiments/emobox_demo
A=${A:-model=acnt}
B=${B:-model=crnn_attn}
started=$(date +%s)
$PY -m ser_lightning.train -m experiment=emobox_folds task_name=emobox_demo \
    "${A%%=*}=${A#*=},${B#*=}" trainer.max_epochs="${EPOCHS:-8}" \
    print_config=false callbacks.progress_bar=null callbacks.model_summary=null "$@"
sweep=$(ls -td outputs/emobox_demo/multiruns/*/ | head -1)
$PY -m ser_lightning.report "$sweep" --out "$OUT" --compare "$A" "$B" \
    --title "EmoBox folds on the demo corpus: ${A} vs ${B}, ${EPOCHS:-8} epochs"
$PY experiments/emobox_demo/calibration_table.py "$sweep" > "$OUT/calibration.md"
# robustness of fold 0 of configuration A
job=$(grep -l -- "- data.fold=0" "$sweep"/*/.hydra/overrides.yaml | xargs grep -l -- "- ${A}" | head -1 | xargs dirname | xargs dirname)
ckpt=$(ls "$job"/checkpoints/best-*.ckpt | head -1)
rm -rf "$OUT/robustness"
# shellcheck disable=SC2086
$PY -m ser_lightning.eval ckpt_path="$ckpt" robustness=standard hydra.run.dir="$OUT/robustness" ${EVAL_ARGS:-} 2>&1 | tail -40
echo "study done in $(( $(date +%s) - started )) s"
