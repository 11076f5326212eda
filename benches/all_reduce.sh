#!/usr/bin/env bash
# The trainer's gradient all-reduce between W processes on this machine (loopback):
# `realsyn bench all-reduce` (TCP ring on CPU, NCCL on GPUs) beside
# torch.distributed.all_reduce (gloo on CPU, nccl on GPUs), same tensor size, same
# number of processes, in one run. The default size is ViT-B/32's gradient (151M f32).
#   benches/all_reduce.sh [WORLD] [ELEMENTS]
#   DEVICE=cuda benches/all_reduce.sh 8      # on a machine with 8 GPUs
#   REALSYN_BIN=path/to/realsyn ... uses that binary instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."
WORLD=${1:-2}; ELEMENTS=${2:-151277313}; DEVICE=${DEVICE:-cpu}; ITERS=${ITERS:-5}
PY=${PEER_PYTHON:-.peer-venv/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
if [ -z "${REALSYN_BIN:-}" ]; then
  cargo build --release -q -p realsyn-cli
fi
BIN=${REALSYN_BIN:-$CARGO_TARGET_DIR/release/realsyn}
out=$(mktemp)
ranks() { # port command... : WORLD processes with torchrun's variables
  local port=$1; shift
  for ((r = 0; r < WORLD; r++)); do
    RANK=$r WORLD_SIZE=$WORLD LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 "$@" &
  done
  wait
}
args=(--elements "$ELEMENTS" --device "$DEVICE" --iters "$ITERS")
ranks $((29600 + RANDOM % 300)) "$PY" benches/all_reduce.py "${args[@]}" | tee -a "$out"
ranks $((29900 + RANDOM % 300)) "$BIN" bench all-reduce "${args[@]}" | tee -a "$out"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
peer = next(r for r in rows if r["impl"].startswith("torch"))
print("\n| implementation | ranks | MB per rank | median s | bus GB/s | peer time / ours |")
print("|---|---|---|---|---|---|")
for r in rows:
    name = r["impl"] + (f" ({r['collectives']})" if "collectives" in r else "")
    print(f"| {name} | {r['world']} | {4 * r['elements'] / 1e6:.0f} | {r['median_s']:.3f} | "
          f"{r['busbw_gbs']:.2f} | {peer['median_s'] / r['median_s']:.2f} |")
PY
