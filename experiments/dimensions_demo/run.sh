#!/usr/bin/env bash
# Arousal, valence and dominance on the demo corpus (targets from the synthesiser's design,
# docs/dimensions.md): a small CRNN trained with task=dimensional and with task=multitask on the
# speaker-independent actor split (16 training, 4 validation, 4 test actors), CCC per dimension
# with 95 % speaker-bootstrap intervals, and UA for the multitask run.
#
#   bash experiments/dimensions_demo/run.sh              # the recorded runs: 12 epochs each
#   EPOCHS=30 bash experiments/dimensions_demo/run.sh
#
# Writes the runs under outputs/dimensions_demo/<task>/ and experiments/dimensions_demo/results.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=experiments/dimensions_demo
started=$(date +%s)
for task in dimensional multitask; do
    $PY -m ser_lightning.train task=$task model=crnn_attn "model.net.conv_channels=[8,16]" model.net.lstm_hidden=16 \
        trainer.max_epochs="${EPOCHS:-12}" task_name=dimensions_demo hydra.run.dir=outputs/dimensions_demo/$task \
        print_config=false callbacks.progress_bar=null callbacks.model_summary=null logger=csv "$@"
done
$PY $OUT/aggregate.py outputs/dimensions_demo --out $OUT
echo "runs done in $(( $(date +%s) - started )) s on $(nproc) CPU cores" | tee -a "$OUT/results.md"
