#!/usr/bin/env bash
# Evaluate or export the latest checkpoint (the Ascend EfficientNet-B0 test.sh, on TensorFlow 2).
#   MODEL_DIR=result/8p/0 DATA_DIR=/data/imagenet bash test.sh eval [--flag=value ...]
#   MODEL_DIR=result/8p/0 bash test.sh export [--formats=saved_model,tflite ...]
# eval prints top-1/top-5 and writes $MODEL_DIR/eval_results.json (model name, classes and image
# size come from $MODEL_DIR/config.json unless given). export runs `python -m efficientnet.export`.
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
    # Model settings of the training run (config.json) unless given; later flags win.
    if [ -f "$MODEL_DIR/config.json" ]; then
      saved_flags=$("$PYTHON" - "$MODEL_DIR/config.json" "${MODEL_NAME:-}" <<'PY'
import json, sys
try:
    saved = json.load(open(sys.argv[1]))
    lines = [] if sys.argv[2] else [f"--model_name={saved['model_name']}"]
    lines.append(f"--num_label_classes={saved['num_label_classes']}")
    for key in ("image_size", "crop_padding", "resize_method"):
        if saved.get(key) is not None:
            lines.append(f"--{key}={saved[key]}")
except (OSError, ValueError, KeyError, TypeError) as error:
    sys.exit(f"error: {sys.argv[1]} is not the config.json of a training run "
             f"({type(error).__name__}: {error}): restore it, or pass MODEL_NAME and "
             "--num_label_classes")
print("\n".join(lines))
PY
) || exit 2
      while IFS= read -r flag; do
        if [ -n "$flag" ]; then args+=("$flag"); fi
      done <<< "$saved_flags"
    fi
    exec "$PYTHON" -m efficientnet.export "${args[@]}" "$@" ;;
  *)
    echo "usage: bash test.sh {eval|export} [--flag=value ...]" >&2
    exit 2 ;;
esac
