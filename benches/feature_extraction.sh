#!/usr/bin/env bash
# Evaluator feature extraction, images/s end to end (wds shards -> decode -> resize +
# centre crop -> ViT encode -> normalise): realsyn beside open_clip + webdataset on
# the same shards, same architecture, random weights, one run.
#   benches/feature_extraction.sh [ARCH] [BATCH] [IMAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${1:-ViT-B-32}; BATCH=${2:-32}; IMAGES=${3:-256}
PY=${PEER_PYTHON:-.peer-venv/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
cargo build --release -q -p realsyn-cli
BIN=$CARGO_TARGET_DIR/release/realsyn
DATA=out/bench-features/fashion-mnist
[ -d "$DATA/test" ] || "$BIN" dataset fashion-mnist --out "$DATA"
peer=$("$PY" benches/feature_extraction.py "$DATA" "$ARCH" "$BATCH" "$IMAGES" | tail -n 1)
ours=$("$BIN" bench features --shards "$DATA" --arch "$ARCH" --batch-size "$BATCH" \
    --max-images "$IMAGES" --iters 1 | tail -n 1)
echo "$peer"; echo "$ours"
python3 - "$peer" "$ours" <<'PY'
import json, sys
peer, ours = (json.loads(s) for s in sys.argv[1:])
print("\n| implementation | images | median s | images/s | ours / peer |\n|---|---|---|---|---|")
for r in (peer, ours):
    print(f"| {r['impl']} | {r.get('images', '')} | {r['median_s']:.2f} | {r['items_per_s']:.1f} | "
          f"{r['items_per_s'] / peer['items_per_s']:.2f} |")
PY
