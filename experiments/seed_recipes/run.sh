#!/usr/bin/env bash
# The five seed recipes on the demo corpus, speaker-independent and random split side by side.
#
#   bash experiments/seed_recipes/run.sh            # the recipes as written (hours on a CPU)
#   EPOCHS=10 ACTORS=12 bash experiments/seed_recipes/run.sh   # a reduced budget
#
# Writes the sweep under outputs/seed_recipes/multiruns/<date>/ and the report (report.md,
# summary.csv, results.csv, report.png) into experiments/seed_recipes/.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
EXTRA=()
[ -n "${EPOCHS:-}" ] && EXTRA+=("trainer.max_epochs=${EPOCHS}")
[ -n "${ACTORS:-}" ] && EXTRA+=("data.demo.num_actors=${ACTORS}" "data.root=data/demo_${ACTORS}")
SEEDS=${SEEDS:-1}
$PY -m ser_lightning.train -m task_name=seed_recipes \
    experiment=seed000_acnt,seed001_cnn_bilstm_mha,seed002_crnn_mfcc,seed003_crnn_logmel,seed004_cnn2ch \
    data=demo data.split=actor,random seed=${SEEDS} \
    "${EXTRA[@]}" "$@"
sweep=$(ls -td outputs/seed_recipes/multiruns/*/ | head -1)
# two split protocols side by side on purpose: their difference is what this study shows
$PY -m ser_lightning.report "$sweep" --out experiments/seed_recipes --allow-protocol-mismatch --title "Seed recipes on the demo corpus: speaker-independent vs random split"
