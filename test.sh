#!/usr/bin/env bash
# Evaluate or export the latest checkpoint (the Ascend EfficientNet-B0 test.sh, on TensorFlow 2).
#   MODEL_DIR=result/8p/0 DATA_DIR=/data/imagenet bash test.sh eval [--flag=value ...]
#   MODEL_DIR=result/8p/0 bash test.sh export [--formats=saved_model,tflite ...]
# eval prints top-1/top-5 and writes $MODEL_DIR/eval_results.json (model name, classes and image
# size come from $MODEL_DIR/config.json unless given). export runs `python -m efficientnet.export`
# with the run's model settings (`python -m efficientnet.config.run_file export-flags`).
# Env: MODEL_DIR (default result/8p/0), DATA_DIR, MODEL_NAME, EXPORT_DIR, PYTHON.
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
command=${1:-eval}
if [ $# -gt 0 ]; then shift; fi
MODEL_DIR=${MODEL_DIR:-result/8p/0}
args=(--model_dir="$MODEL_DIR")
if [ -n "${DATA_DIR:-}" ]; then args+=(--data_dir="$DATA_DIR"); fi
if [ -n "${MODEL_NAME:-}" ]; then args+=(--model_name="$MODEL_NAME"); fi
case "$command" in
  eval)
    exec "$PYTHON" -m efficientnet.main --mode=eval "${args[@]}" "$@" ;;
  export)
    if [ -n "${EXPORT_DIR:-}" ]; then args+=(--export_dir="$EXPORT_DIR"); fi
    # Model settings of the training run (its config.json) first: flags after them win.
    saved=$("$PYTHON" -m efficientnet.config.run_file export-flags "$MODEL_DIR")
    if [ -n "$saved" ]; then mapfile -t saved_flags <<< "$saved"; args=("${saved_flags[@]}" "${args[@]}"); fi
    exec "$PYTHON" -m efficientnet.export "${args[@]}" "$@" ;;
  *)
    echo "usage: bash test.sh {eval|export} [--flag=value ...]" >&2
    exit 2 ;;
esac
