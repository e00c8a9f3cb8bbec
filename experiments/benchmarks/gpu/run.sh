#!/usr/bin/env bash
# Every GPU measurement of the benchmarks in one call: about 9 minutes on one H200.
#
# On the GPU machine (no network; the packages it lacks travel as wheels in .whl/, made here by
# fetch_wheels.sh), as the device `run` call, with carry [".whl"] and timeout_s 570:
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD; bash experiments/benchmarks/gpu/run.sh
#
# On a CPU, every part with tiny budgets (each override, path and output file exercised):
#
#   SMOKE=1 PY=.venv/bin/python bash experiments/benchmarks/gpu/run.sh
#
# Parts, in this order, each under its own time limit, each going on to the next if it fails:
#   prepare  demo corpus (1440 clips) and log-mel cache, timed apart from the runs
#   a        100 ACNT epochs through `python -m ser_lightning.train` (validation every epoch,
#            checkpoints, test, summary), data.placement=device, then =host, then =device with
#            model.compile=true; process wall time
#   b        throughput of every model on log-mel, bf16-mixed and 32-true (rows on the device),
#            and bf16-mixed from a DataLoader (host): clips/s, s/epoch, data wait, peak GPU memory
#   d        data work per epoch: the seed-style Dataset baseline beside ours, on this machine
#   c        the five seed recipes x split=actor,random x seeds, one Hydra multirun, at the
#            budget the time left allows (budget.py prints it: seeds, epochs, a time share per
#            job), then `ser_lightning.report`
# Results in $OUT (a local folder when OUT is unset), at most 8 files: gpu_report.md (every
# table and timing), seed_study/{report.md,summary.csv,results.csv,report.png}, logs.tar.gz.
#
# Environment: OUT, WORK (scratch folder), PY, TOTAL_SECONDS (the whole script's budget,
# default 530; 720 for a smoke run), EPOCHS / SEEDS (fix the recipe study's budget), SMOKE=1.
set -uo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
HERE=experiments/benchmarks/gpu
STARTED=$SECONDS
SMOKE=${SMOKE:-0}
PY=${PY:-python3}
OUT=${OUT:-$ROOT/outputs/gpu_benchmark}
WORK=${WORK:-$(mktemp -d /tmp/ser_gpu_benchmark.XXXXXX)}
# the smoke run's recipe jobs compute handcrafted features and BiLSTM passes on 2 CPU cores
TOTAL=${TOTAL_SECONDS:-$([[ "${SMOKE:-0}" == 1 ]] && echo 720 || echo 530)}
RESERVE=20  # seconds kept for the report and packing at the end
LOGS=$WORK/logs
mkdir -p "$OUT" "$LOGS"
export PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1 SER_LIGHTNING_ROOT=$WORK
# no wandb prompts or network attempts on an offline machine
export WANDB_MODE=disabled HF_HUB_OFFLINE=1

if [[ "$SMOKE" == 1 ]]; then
    # the fewest actors a speaker-independent split takes; two models and a few batches per
    # epoch where the GPU run times every model on whole epochs
    ACTORS=6 TRAINER=trainer=cpu ACCEL=cpu PRECISIONS=32-true,bf16-mixed WORKERS=1
    EPOCHS_A=2 TP_EPOCHS=2 MODELS=acnt,crnn_attn_mfcc PIPE_ARGS=(--epochs 1 --workers 1 --offline-copies 1)
    LIMIT=(++trainer.limit_train_batches=2 ++trainer.limit_val_batches=2) TP_LIMIT=(++trainer.limit_train_batches=2)
    # the recipes' test and calibration passes over whole splits take a minute on 2 cores (part a has both)
    SWEEP_LIMIT=("${LIMIT[@]}" ++trainer.limit_test_batches=2 calibration=none)
    PREP_CAP=240  # librosa's features and offline copies on 2 cores (16 on the GPU machine)
    export EPOCHS=${EPOCHS:-1} SEEDS=${SEEDS:-1}
    CHECK_ARGS=(--no-gpu)
else
    ACTORS=24 TRAINER=trainer=gpu ACCEL=gpu PRECISIONS=bf16-mixed,32-true WORKERS=4
    EPOCHS_A=100 TP_EPOCHS=5 MODELS=acnt,crnn_attn,crnn_attn_mfcc,cnn_bilstm_mha PIPE_ARGS=(--epochs 2 --workers 8)
    LIMIT=() TP_LIMIT=() SWEEP_LIMIT=() PREP_CAP=120
    CHECK_ARGS=()
fi
DATA=(data=demo "data.demo.num_actors=$ACTORS" "data.root=$WORK/data/demo" "paths.cache_dir=$WORK/cache")
STEPS=$WORK/steps.tsv
: >"$STEPS"

say() { printf '[%s +%4ds] %s\n' "$(date +%H:%M:%S)" "$((SECONDS - STARTED))" "$*"; }
left() { echo $((TOTAL - RESERVE - (SECONDS - STARTED))); }

# step NAME CAP CMD...: run CMD with its output in $LOGS/NAME.log, stopped after CAP seconds or
# when the script's budget runs out, whichever first; one line in steps.tsv (name, exit status,
# seconds); the log's end on the terminal if it failed
step() {
    local name=$1 cap=$2; shift 2
    local limit
    limit=$(left)
    ((limit > cap)) && limit=$cap
    if ((limit < 10)); then
        say "$name: skipped, no time left"
        printf '%s\tskipped\t0\n' "$name" >>"$STEPS"
        return 1
    fi
    say "$name: start (limit ${limit} s)"
    local t0=$SECONDS rc
    timeout -k 10 "$limit" "$@" >"$LOGS/$name.log" 2>&1
    rc=$?
    local took=$((SECONDS - t0))
    printf '%s\t%s\t%s\n' "$name" "$rc" "$took" >>"$STEPS"
    if ((rc == 0)); then
        say "$name: done in ${took} s"
    else
        say "$name: FAILED (exit $rc$( ((rc == 124 || rc == 137)) && echo ', time limit')) after ${took} s; log end:"
        grep -v '━' "$LOGS/$name.log" | tail -15 | sed 's/^/    /'
    fi
    return $rc
}

say "work folder $WORK, results to $OUT, budget ${TOTAL} s, smoke=$SMOKE"
$PY "$HERE/check_imports.py" "${CHECK_ARGS[@]}" >"$LOGS/check_imports.log" 2>&1
rc=$?
grep -E 'FAIL|cuda|failed' "$LOGS/check_imports.log"
if ((rc != 0)); then
    say "imports failed: nothing measured"
    cp "$LOGS/check_imports.log" "$OUT/"
    exit 1
fi
[[ "$ACCEL" == gpu ]] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$LOGS/nvidia_smi.csv" 2>&1
{ uname -a; nproc; free -g; } >"$LOGS/machine.txt" 2>&1

# -- prepare: corpus and log-mel cache, timed apart from the runs
step prepare 120 $PY "$HERE/prepare.py" --work "$WORK" --actors "$ACTORS" --json "$WORK/prepare.json"

# -- a: 100 ACNT epochs through the real entry point: device-held rows, DataLoader batches, and
# device-held rows with the network compiled (what compiling costs and gains over a whole run;
# not in the smoke run, where compiling on the CPU takes minutes)
for variant in device host $([[ "$SMOKE" == 1 ]] || echo device_compiled); do
    name=a_acnt_${variant}
    compiled=()
    [[ "$variant" == device_compiled ]] && compiled=(model.compile=true)
    rm -rf "$WORK/runs/$name"
    t0=$(date +%s.%N)
    step "$name" 150 $PY -m ser_lightning.train model=acnt features=logmel "${DATA[@]}" $TRAINER \
        trainer.max_epochs=$EPOCHS_A trainer.min_epochs=$EPOCHS_A callbacks.early_stopping.patience=$EPOCHS_A \
        data.placement=${variant%_compiled} "${compiled[@]}" print_config=false hydra.run.dir="$WORK/runs/$name"
    rc=$?
    t1=$(date +%s.%N)
    wall=$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }")
    printf '%s\t%s\t%s\n' "$variant" "$rc" "$wall" >>"$WORK/a_wall.tsv"
    say "$name: wall time from process start to exit $wall s"
done

# -- b: throughput table, every model on log-mel
tp() {  # tp NAME ARGS...: one training_throughput.py run, its table and rows kept
    local name=$1; shift
    step "$name" 150 $PY experiments/benchmarks/training_throughput.py --models $MODELS --actors "$ACTORS" \
        --epochs "$TP_EPOCHS" --accelerator "$ACCEL" --work-dir "$WORK/throughput" \
        --out "$WORK/$name.md" --json "$WORK/$name.json" "$@" "${TP_LIMIT[@]}"
}
mkdir -p "$WORK/throughput" && ln -sfn "$WORK/data/demo" "$WORK/throughput/demo" && ln -sfn "$WORK/cache" "$WORK/throughput/cache"
tp b_throughput_device --precision "$PRECISIONS" --placement device
tp b_throughput_host --precision "${PRECISIONS%%,*}" --placement host --workers "$WORKERS"

# -- d: the seed-style Dataset baseline beside ours (data work per epoch on this machine)
mkdir -p "$WORK/pipeline" && ln -sfn "$WORK/data/demo" "$WORK/pipeline/demo"
step d_data_pipeline 110 $PY experiments/benchmarks/data_pipeline.py --actors "$ACTORS" "${PIPE_ARGS[@]}" \
    --work-dir "$WORK/pipeline" && grep -v '━' "$LOGS/d_data_pipeline.log" | sed -n '/^## /,$p' >"$WORK/d_data_pipeline.md"

# -- c: the seed-recipe study at the largest budget that fits
step c_prepare_recipes "$PREP_CAP" $PY "$HERE/prepare.py" --work "$WORK" --actors "$ACTORS" --recipes \
    --json "$WORK/prepare_recipes.json"
sweep_seconds=$(($(left) - 25))  # the report's own time
# nine tenths of it for the budget: a job's set-up and test take what they take
budget=$($PY "$HERE/budget.py" --seconds $((sweep_seconds * 9 / 10)) --throughput "$WORK"/b_throughput_*.json \
    --json "$WORK/budget.json" 2>"$LOGS/c_budget.log")
cat "$LOGS/c_budget.log"
EPOCHS_C='' SEEDS_C=1 MAX_TIME=''
eval "$(echo "$budget" | sed -n 's/^EPOCHS=/EPOCHS_C=/p; s/^SEEDS=/SEEDS_C=/p; s/^MAX_TIME=/MAX_TIME=/p')"
C_ARGS=()
[[ -n "$EPOCHS_C" ]] && C_ARGS+=("trainer.max_epochs=$EPOCHS_C")
[[ -n "$MAX_TIME" ]] && C_ARGS+=("+trainer.max_time=\"$MAX_TIME\"")
say "c: seed recipes with seeds $SEEDS_C, epochs ${EPOCHS_C:-as written}, time share per job ${MAX_TIME:-none}"
rm -rf "$WORK/seed_sweep"
# the costliest recipe (seed001: a BiLSTM over 862 frames of three times the clips) last, so that
# a sweep that runs out of time loses its jobs rather than those of the others
step c_seed_sweep "$sweep_seconds" $PY -m ser_lightning.train -m task_name=seed_recipes \
    experiment=seed000_acnt,seed002_crnn_mfcc,seed003_crnn_logmel,seed004_cnn2ch,seed001_cnn_bilstm_mha \
    "${DATA[@]}" data.split=actor,random seed="$SEEDS_C" $TRAINER data.placement=auto print_config=false \
    "${C_ARGS[@]}" "${SWEEP_LIMIT[@]}" hydra.sweep.dir="$WORK/seed_sweep"
if [[ -d "$WORK/seed_sweep" ]]; then
    # finished jobs are reported even when the sweep ran out of time
    # the study sets two split protocols side by side on purpose (their difference is its point)
    TOTAL=$((TOTAL + RESERVE - 5)) step c_report 60 $PY -m ser_lightning.report "$WORK/seed_sweep" \
        --out "$WORK/seed_report" --allow-protocol-mismatch \
        --title "Seed recipes on the demo corpus ($ACCEL): speaker-independent vs random split"
fi

# -- pack: at most 8 files in $OUT
mkdir -p "$OUT/seed_study"
for f in report.md summary.csv results.csv report.png; do
    [[ -f "$WORK/seed_report/$f" ]] && cp "$WORK/seed_report/$f" "$OUT/seed_study/$f"
done
$PY "$HERE/summarize.py" --work "$WORK" --out "$OUT/gpu_report.md" --smoke "$SMOKE" \
    --elapsed $((SECONDS - STARTED)) >"$LOGS/summarize.log" 2>&1 || tail -5 "$LOGS/summarize.log"
# logs, configs, summaries and small tables; no checkpoints or caches
(cd "$WORK" && find . -path ./data -prune -o -path ./cache -prune -o -path ./throughput -prune \
    -o -path ./pipeline -prune -o -type f \( -name '*.log' -o -name '*.json' -o -name '*.yaml' \
    -o -name '*.csv' -o -name '*.md' -o -name '*.tsv' -o -name '*.txt' \) -size -2M -print |
    tar -czf "$OUT/logs.tar.gz" -T -)
say "results in $OUT:"
(cd "$OUT" && find . -type f -printf '  %p  %s bytes\n' | sort)
awk '/^## /{on = ($0 == "## Summary")} on' "$OUT/gpu_report.md" 2>/dev/null
say "done in $((SECONDS - STARTED)) s"
