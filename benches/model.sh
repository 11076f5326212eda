#!/usr/bin/env bash
# ViT-B/32 on this machine: realsyn (Burn backends) beside PyTorch open_clip, same run.
#   benches/model.sh [ARCH] [BATCH] [ITERS]
# Needs: a release build with the ndarray feature (built here if missing) and the peer
# venv (scripts/peer-env.sh). Prints JSON lines and a ratio table (peer time / ours).
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${1:-ViT-B-32}; BATCH=${2:-32}; ITERS=${3:-3}
PY=${PEER_PYTHON:-.peer-venv/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
cargo build --release -q -p realsyn-cli --features ndarray
BIN=$CARGO_TARGET_DIR/release/realsyn
out=$(mktemp)
for mode in encode-image train-step; do
  "$PY" benches/model_bench.py --mode $mode --arch "$ARCH" --batch-size "$BATCH" --iters "$ITERS" | tee -a "$out"
  for dev in cpu ndarray; do
    "$BIN" bench --mode $mode --arch "$ARCH" --batch-size "$BATCH" --iters "$ITERS" --device $dev | tee -a "$out"
  done
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print("\n| mode | implementation | backend | median s/iter | items/s | peer time / ours |")
print("|---|---|---|---|---|---|")
for mode in ["encode-image", "train-step"]:
    peer = next(r for r in rows if r["mode"] == mode and r["impl"].startswith("open_clip"))
    for r in (x for x in rows if x["mode"] == mode):
        print(f"| {mode} | {r['impl']} | {r['backend']} | {r['median_s']:.2f} | {r['items_per_s']:.2f} | {peer['median_s'] / r['median_s']:.2f} |")
PY
