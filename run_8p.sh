#!/usr/bin/env bash
# One worker process per device of an Ascend rank table (MultiWorkerMirroredStrategy), starting
# only the ranks whose server_id is this host: every host of a multi-host table runs this same
# command with the same table (docs/multi_host.md).
#   DATA_DIR=/data/imagenet bash run_8p.sh [--flag=value ...]
# Env: DATA_DIR, MODEL_DIR (shared; default result/8p/0, written by the chief, rank 0),
# MODEL_NAME, RANK_TABLE (default rank_tables/8p.json), RANK_SIZE (default: all devices of the
# table; lower it to run fewer), BASE_PORT (worker port = BASE_PORT + device_id), SERVER_ID (this
# host's server_id in the table; default: detected from its names and addresses), ACCELERATOR
# (cuda | rocm | ascend | none: rank r sees only device device_id; default cuda), PYTHON.
# Logs: result/8p/<rank>/train.log. Exits non-zero if any worker fails, after killing the rest.
set -uo pipefail
cd "$(dirname "$0")"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
RANK_TABLE=${RANK_TABLE:-rank_tables/8p.json}
BASE_PORT=${BASE_PORT:-23456}
RESULT_DIR=${RESULT_DIR:-result/8p}
MODEL_DIR=${MODEL_DIR:-$RESULT_DIR/0}
TABLE_SIZE=$("$PYTHON" -m rank_tables size "$RANK_TABLE") || exit 2
RANK_SIZE=${RANK_SIZE:-$TABLE_SIZE}
ACCELERATOR=${ACCELERATOR:-cuda}
LOCAL_RANKS=$("$PYTHON" -m rank_tables local-ranks "$RANK_TABLE" --rank_size "$RANK_SIZE") || exit 2
if [ -z "$LOCAL_RANKS" ]; then echo "run_8p.sh: none of the first $RANK_SIZE ranks is on this host"; exit 0; fi
args=(--model_dir="$MODEL_DIR")
if [ -n "${DATA_DIR:-}" ]; then args+=(--data_dir="$DATA_DIR"); fi
if [ -n "${MODEL_NAME:-}" ]; then args+=(--model_name="$MODEL_NAME"); fi

pids=()
ranks=()  # ranks[i]: the rank of pids[i]
stop_all() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done; }
trap 'echo "run_8p.sh: stopping workers"; stop_all; wait; exit 130' INT TERM

for rank in $LOCAL_RANKS; do
  mkdir -p "$RESULT_DIR/$rank"
  # rank_tables exec sets TF_CONFIG, RANK_ID, RANK_SIZE, DEVICE_ID, *_VISIBLE_DEVICES, then execs.
  "$PYTHON" -m rank_tables exec "$RANK_TABLE" --rank "$rank" --rank_size "$RANK_SIZE" \
    --base_port "$BASE_PORT" --accelerator "$ACCELERATOR" -- \
    "$PYTHON" -m efficientnet.main "${args[@]}" "$@" > "$RESULT_DIR/$rank/train.log" 2>&1 &
  pids+=($!)
  ranks+=("$rank")
  echo "rank $rank: pid $!, log $RESULT_DIR/$rank/train.log"
done

status=0
for ((i = 0; i < ${#pids[@]}; i++)); do
  wait -n -p failed_pid
  code=$?
  if [ "$code" -ne 0 ]; then
    status=$code
    for ((j = 0; j < ${#pids[@]}; j++)); do
      if [ "${pids[$j]}" = "$failed_pid" ]; then rank=${ranks[$j]}; break; fi
    done
    # The worker's own one-line error (the last `error:` line of its log), then the exit status.
    reason=$(grep -h "error:" "$RESULT_DIR/$rank/train.log" 2>/dev/null | tail -n 1)
    echo "run_8p.sh: rank $rank failed (exit $code)${reason:+: $reason}; stopping the others" \
      "(see $RESULT_DIR/$rank/train.log)" >&2
    stop_all
    break
  fi
done
wait
if [ "$status" -eq 0 ]; then echo "run_8p.sh: all ${#pids[@]} workers of this host finished; model in $MODEL_DIR"; fi
exit $status
