#!/usr/bin/env bash
# Training data pipeline, images/s: realsyn's loader beside Python webdataset + PIL
# (+ torch DataLoader workers), same shards (real photos from the scikit-image
# wheel, re-encoded as JPEG), same transform (open_clip's RandomResizedCrop(224,
# scale 0.9-1) + normalise), same batch size, in one run.
#   benches/data_pipeline.sh [N_SAMPLES] [BATCH]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2048}; BATCH=${2:-64}
PY=${PEER_PYTHON:-.peer-venv/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
cargo build --release -q -p realsyn-cli
BIN=$CARGO_TARGET_DIR/release/realsyn
DATA=out/bench-data
[ -d "$DATA/data/photos" ] || python3 scripts/fetch-registry-data.py "$DATA/data"
[ -f "$DATA/shards/sizes.json" ] || "$PY" benches/data_pipeline.py make-shards "$DATA/data/photos" "$DATA/shards" "$N"
PATTERN="$DATA/shards/{00000..00003}.tar"
out=$(mktemp)
for w in 1 2; do
  "$PY" benches/data_pipeline.py bench "$PATTERN" $w "$BATCH" 3 | tee -a "$out"
  "$BIN" bench data --shards "$PATTERN" --workers $w --batch-size "$BATCH" --iters 3 | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print("\n| workers | implementation | images/s | ours / peer |")
print("|---|---|---|---|")
for w in (1, 2):
    peer = next(r for r in rows if r["workers"] == w and r["impl"].startswith("python"))
    for r in (x for x in rows if x["workers"] == w):
        print(f"| {w} | {r['impl']} | {r['images_per_s']:.1f} | {r['images_per_s'] / peer['images_per_s']:.2f} |")
PY
