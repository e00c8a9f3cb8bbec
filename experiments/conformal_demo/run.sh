#!/usr/bin/env bash
# Conformal prediction sets on the demo corpus: ACNT trained with calibration=conformal on EmoBox's
# RAVDESS test folds (speaker-independent: 16 training, 4 validation, 4 test actors per fold), the
# sets' coverage and size on the test speakers for several targets, per gender and per speaker.
#
#   bash experiments/conformal_demo/run.sh                      # fold 0, 4 epochs (the recorded run)
#   FOLDS=0,1,2,3,4,5 EPOCHS=25 bash experiments/conformal_demo/run.sh
#
# Each fold's threshold for 90 % is the one train stored in its checkpoint; the 80 % and 95 % rows
# are fitted the same way (ser_lightning.conformal) on the same validation clips' probabilities,
# which `eval split=val` writes. Writes the sweep under outputs/conformal_demo/multiruns/<date>/ and
# experiments/conformal_demo/results.md, results.csv and coverage.png.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=experiments/conformal_demo
started=$(date +%s)
$PY -m ser_lightning.train -m experiment=emobox_folds task_name=conformal_demo data.fold="${FOLDS:-0}" \
    calibration=conformal calibration.coverage=0.9 trainer.max_epochs="${EPOCHS:-4}" \
    print_config=false callbacks.progress_bar=null callbacks.model_summary=null "$@"
sweep=$(ls -td outputs/conformal_demo/multiruns/*/ | head -1)
for job in "$sweep"/*/; do
    [ -d "$job/checkpoints" ] || continue
    ckpt=$(ls "$job"/checkpoints/best-*.ckpt | head -1)
    # the validation clips' calibrated probabilities, to fit other targets on the same clips
    $PY -m ser_lightning.eval ckpt_path="$ckpt" split=val hydra.run.dir="$job/val_eval" 2>&1 | tail -3
done
$PY $OUT/aggregate.py "$sweep" --out "$OUT"
echo "study done in $(( $(date +%s) - started )) s" | tee -a "$OUT/results.md"
