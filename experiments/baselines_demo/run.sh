#!/usr/bin/env bash
# The classical baselines on the demo corpus with EmoBox's six RAVDESS test folds: eGeMAPS with
# logistic regression and with an SVM, ComParE with an SVM; mean ± std over folds with 95 %
# speaker-bootstrap intervals, and the feature cost per clip.
#
#   bash experiments/baselines_demo/run.sh                 # the demo corpus (data/demo)
#   bash experiments/baselines_demo/run.sh data=ravdess    # RAVDESS itself (data/ravdess)
#
# Writes the sweeps under outputs/baselines_demo/ and experiments/baselines_demo/results.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=outputs/baselines_demo
FOLDS="data.split=kfold data.folds=emobox data.num_folds=6 data.fold=0,1,2,3,4,5"
started=$(date +%s)
$PY -m ser_lightning.baseline -m features=egemaps classifier=logreg,svm $FOLDS \
    hydra.sweep.dir=$OUT/egemaps "$@"
# ComParE's 6,373 features: permutation importance left out (it would shuffle each of them)
$PY -m ser_lightning.baseline -m features=compare classifier=svm importance.enabled=false $FOLDS \
    hydra.sweep.dir=$OUT/compare "$@"
$PY experiments/baselines_demo/aggregate.py $OUT/egemaps $OUT/compare > experiments/baselines_demo/results.md
echo "total seconds: $(( $(date +%s) - started ))" | tee -a experiments/baselines_demo/results.md
