#!/usr/bin/env bash
# Hard against soft targets on the demo corpus (its simulated annotator votes, demo_corpus/votes.py):
# the same small CRNN and split trained with data.targets=hard and data.targets=soft, compared on
# test UA, the Jensen-Shannon divergence between predicted and annotator distributions, and accuracy
# on high- and low-agreement clips (agreement >= 0.75: share of the majority vote).
#
#   bash experiments/soft_targets_demo/run.sh              # the recorded runs (30 epochs, about a minute each on 2 CPU cores)
#   SEEDS="0 1 2 3 4" EPOCHS=60 bash experiments/soft_targets_demo/run.sh
#
# A 12-actor, 1.5 s demo corpus (generated under outputs/soft_targets_demo/corpus on first use),
# speaker-independent split (data.split=actor), three seeds (the split, the initialisation, the order). Writes experiments/soft_targets_demo/results.md,
# results.csv and each run's agreement plot.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=experiments/soft_targets_demo
ROOT=${ROOT:-outputs/soft_targets_demo/corpus}
started=$(date +%s)
runs=()
for seed in ${SEEDS:-0 1 2}; do
for targets in hard soft; do
    $PY -m ser_lightning.train data=demo data.root="$ROOT" data.demo.num_actors=12 data.demo.duration=1.5 \
        data.duration=1.5 data.targets=$targets model=crnn_attn model.net.conv_channels='[8,16]' \
        model.net.lstm_hidden=16 trainer.max_epochs="${EPOCHS:-30}" logger=none print_config=false \
        callbacks.progress_bar=null callbacks.model_summary=null callbacks.lr_monitor=null \
        task_name=soft_targets_demo \
        seed="$seed" hydra.run.dir="outputs/soft_targets_demo/$targets-seed$seed" "$@"
    runs+=("outputs/soft_targets_demo/$targets-seed$seed")
done
done
$PY $OUT/aggregate.py "${runs[@]}" --out "$OUT"
echo "study done in $(( $(date +%s) - started )) s" | tee -a "$OUT/results.md"
