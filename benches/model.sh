#!/usr/bin/env bash
# ViT-B/32 on this machine: realsyn (Burn backends) beside PyTorch open_clip, same run.
#   benches/model.sh [ARCH] [BATCH] [ITERS]
#   MODES="encode-image" DEVICES=cpu benches/model.sh EVA02-B-16 8 3   # EVA02 beside open_clip + timm
#   REALSYN_BIN=path/to/realsyn ... uses that binary instead of building one
#   GRAD_CHECKPOINTING=1 ... train-step on both sides with per-block activation checkpointing
#   WARMUP=N ... untimed runs first on both sides (default 2: the first two training steps
#   of either side are slow while its allocator grows the heap to its peak, e.g. open_clip
#   16.1 and 9.6 s, realsyn 11.3 and 8.6 s before ~8.5 and ~8.2 s steady, ViT-B/32 b32)
# Needs: a release build with the ndarray feature (built here if missing) and the peer
# venv (scripts/peer-env.sh). Prints JSON lines and a ratio table (peer time / ours).
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${1:-ViT-B-32}; BATCH=${2:-32}; ITERS=${3:-3}; WARMUP=${WARMUP:-2}
PY=${PEER_PYTHON:-.peer-venv/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
if [ -z "${REALSYN_BIN:-}" ]; then
  cargo build --release -q -p realsyn-cli --features ndarray
fi
BIN=${REALSYN_BIN:-$CARGO_TARGET_DIR/release/realsyn}
out=$(mktemp)
MODES=${MODES:-encode-image train-step}; DEVICES=${DEVICES:-cpu ndarray}
for mode in $MODES; do
  extra=()
  if [ -n "${GRAD_CHECKPOINTING:-}" ] && [ "$mode" = train-step ]; then extra=(--grad-checkpointing); fi
  "$PY" benches/model_bench.py --mode $mode --arch "$ARCH" --batch-size "$BATCH" --warmup "$WARMUP" --iters "$ITERS" "${extra[@]}" | tee -a "$out"
  for dev in $DEVICES; do
    "$BIN" bench $mode --arch "$ARCH" --batch-size "$BATCH" --warmup "$WARMUP" --iters "$ITERS" --device $dev "${extra[@]}" | tee -a "$out"
  done
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print("\n| mode | implementation | backend | median s/iter | items/s | peak RSS MiB | peer time / ours |")
print("|---|---|---|---|---|---|---|")
for mode in dict.fromkeys(r["mode"] for r in rows):
    peer = next(r for r in rows if r["mode"] == mode and r["impl"].startswith("open_clip"))
    for r in (x for x in rows if x["mode"] == mode):
        rss = r.get("peak_rss_mib")
        rss = f"{rss:.0f}" if rss is not None else "-"
        print(f"| {mode} | {r['impl']} | {r['backend']} | {r['median_s']:.2f} | {r['items_per_s']:.2f} | {rss} | {peer['median_s'] / r['median_s']:.2f} |")
PY
