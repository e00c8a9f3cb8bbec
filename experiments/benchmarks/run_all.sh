#!/usr/bin/env bash
# Every benchmark at full size, one after another, each report saved as markdown.
#
#   bash experiments/benchmarks/run_all.sh [RESULTS_DIR]        # CPU rows (about 40-55 min on 2 cores)
#   GPU=1 bash experiments/benchmarks/run_all.sh [RESULTS_DIR]  # adds the GPU rows (bf16-mixed)
#
# Run on an otherwise idle machine: the scripts time wall clock, and other work on the same
# cores shows up in every number. Corpora are generated once under data/bench and reused.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=${1:-experiments/benchmarks/results}
DATA=data/bench
mkdir -p "$OUT" "$DATA"
export PYTHONUNBUFFERED=1

run() {  # run NAME ARGS...: stdout (the report) to $OUT/NAME.md, progress on the terminal
    local name=$1; shift
    echo "== $name: $* (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    local started=$SECONDS
    # rich's progress bars also go to stdout when it is not a terminal: keep the report only
    "$PY" "$@" | grep -v '━' >"$OUT/$name.md"
    echo "== $name done in $((SECONDS - started)) s" >&2
    printf '\ncommand: %s; wall time %d s, from process start to exit\n' "$*" "$((SECONDS - started))" >>"$OUT/$name.md"
}

run data_pipeline experiments/benchmarks/data_pipeline.py --actors 24 --workers 2 --epochs 3 --work-dir "$DATA/pipeline"
run training_throughput_cpu experiments/benchmarks/training_throughput.py \
    --models acnt,crnn_attn,cnn_bilstm_mha --actors 24 --epochs 3 --work-dir "$DATA/throughput"
run inference_latency experiments/benchmarks/inference_latency.py \
    --models acnt,crnn_attn,cnn_bilstm_mha --actors 24 --repeats 50 --data-dir "$DATA" --work-dir "$DATA/inference"
run scaling experiments/benchmarks/scaling.py --sizes 360,1440,5760 --durations 1.5,3,6 --epochs 2 --work-dir "$DATA/scaling"
run model_epoch_time experiments/benchmarks/model_epoch_time.py --actors 24 --epochs 2 --data-dir "$DATA" --cache-dir "$DATA/cache"
run cache_verification experiments/benchmarks/cache_verification.py --clips 1440 --repeats 5 --work-dir "$DATA/cache_verification"
run predict_memory experiments/benchmarks/predict_memory.py --seconds 60,300,600
# base-size encoders with random weights (speed does not depend on them); caches in a temporary folder
run ssl_features experiments/benchmarks/ssl_features.py --clips 240 --actors 6 --epochs 3
run ssl_features_whisper_small experiments/benchmarks/ssl_features.py --encoders whisper_small --clips 48 --actors 6 --skip-training
run ssl_finetune_step experiments/benchmarks/ssl_finetune_step.py --encoders wavlm_base_plus whisper_base --batch 4 --steps 3
run predict_startup experiments/benchmarks/predict_startup.py --rounds 5 --data-dir "$DATA" --work-dir "$DATA/predict_startup"
run serve_load experiments/benchmarks/serve_load.py --data-dir "$DATA" --work-dir "$DATA/serve_load"
run vad_segmenter experiments/benchmarks/vad_segmenter.py --data "$DATA/throughput/demo"
run compile_step experiments/benchmarks/compile_step.py --models acnt,crnn_attn --steps 5
# a Lightning training step against a bare PyTorch loop, in turn (the measurements beside the report)
run framework_overhead experiments/benchmarks/framework_overhead.py --models acnt,crnn_attn,cnn_bilstm_mha \
    --steps 20 --rounds 6 --profile --json "$OUT/framework_overhead.json"
if [[ "${GPU:-0}" == 1 ]]; then
    run training_throughput_gpu experiments/benchmarks/training_throughput.py --models acnt,crnn_attn,cnn_bilstm_mha \
        --actors 24 --epochs 5 --accelerator gpu --precision bf16-mixed --workers 4 --work-dir "$DATA/throughput"
    run compile_step_gpu experiments/benchmarks/compile_step.py --models acnt,crnn_attn,cnn2ch \
        --accelerator gpu --precision bf16-mixed --steps 20
    # the target as a user meets it: the real entry point, validation, checkpoints and the
    # summary included, 100 epochs without early stopping (its "time" row is the answer)
    rm -rf "$DATA/acnt_100_epochs_gpu"
    run acnt_100_epochs_gpu -m ser_lightning.train model=acnt features=logmel trainer=gpu \
        trainer.max_epochs=100 trainer.min_epochs=100 callbacks.early_stopping.patience=100 \
        data.root="$DATA/throughput/demo" paths.cache_dir="$DATA/throughput/cache" \
        data.num_workers=4 hydra.run.dir="$DATA/acnt_100_epochs_gpu"
fi
echo "reports in $OUT:" >&2
ls -1 "$OUT" >&2
