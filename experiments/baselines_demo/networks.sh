#!/usr/bin/env bash
# The networks' row beside the classical baselines: `model=linear` and `model=mlp` trained from
# scratch on the same eGeMAPS functionals, the same EmoBox folds of the demo corpus and the same
# protocol, then one study report with eGeMAPS + logistic regression run on the jobs' folds and
# paired against each network.
#
#   bash experiments/baselines_demo/networks.sh
#
# Writes the sweep to outputs/baselines_demo/networks/, the study report (with the baseline's runs)
# to outputs/baselines_demo/networks_report/, and copies its tables to experiments/baselines_demo/networks/.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
SWEEP=outputs/baselines_demo/networks
OUT=experiments/baselines_demo/networks
FOLDS="data.split=kfold data.folds=emobox data.num_folds=6 data.fold=0,1,2,3,4,5"
started=$(date +%s)
$PY -m ser_lightning.train -m model=linear,mlp features=egemaps $FOLDS seed=42 print_config=false \
    callbacks.progress_bar=null hydra.sweep.dir=$SWEEP "$@"
REPORT=outputs/baselines_demo/networks_report  # the baseline's runs (model files) stay out of git
mkdir -p $OUT
for model in linear mlp; do
    $PY -m ser_lightning.report $SWEEP --out $REPORT --baseline egemaps_logreg \
        --compare model=$model baseline=egemaps_logreg --title "eGeMAPS features: networks and logistic regression, EmoBox folds"
    cp $REPORT/comparison.json $OUT/comparison_${model}_vs_logreg.json
done
cp $REPORT/report.md $REPORT/summary.csv $REPORT/results.csv $REPORT/report.png $OUT/
echo "total seconds: $(( $(date +%s) - started ))"
