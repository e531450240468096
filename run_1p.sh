#!/usr/bin/env bash
# One training process (the Ascend EfficientNet-B0 run_1p.sh, on TensorFlow 2).
#   DATA_DIR=/data/imagenet MODEL_DIR=result/1p/0 bash run_1p.sh [--flag=value ...]
# Env: DATA_DIR, MODEL_DIR (default result/1p/0), MODEL_NAME (default: the recipe's), PYTHON.
# Extra arguments go to `python -m efficientnet.main`; the log is $MODEL_DIR/train.log.
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
MODEL_DIR=${MODEL_DIR:-result/1p/0}
mkdir -p "$MODEL_DIR"
args=(--model_dir="$MODEL_DIR")
if [ -n "${DATA_DIR:-}" ]; then args+=(--data_dir="$DATA_DIR"); fi
if [ -n "${MODEL_NAME:-}" ]; then args+=(--model_name="$MODEL_NAME"); fi
export RANK_ID=0 RANK_SIZE=1 DEVICE_ID=${DEVICE_ID:-0}
"$PYTHON" -m efficientnet.main "${args[@]}" "$@" 2>&1 | tee -a "$MODEL_DIR/train.log"
