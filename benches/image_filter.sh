#!/usr/bin/env bash
# Images/s of the size/aspect filter (read the file, size from the header, the rule) on
# one core, realsyn beside PIL, on the GIMP manual's 1,969 images, same run.
#   benches/image_filter.sh [DIR] [REPEAT]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/usr/share/gimp/2.0/help/en}; REPEAT=${2:-5}
PY=${PEER_PYTHON:-.peer-venv/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
cargo build --release -q -p realsyn-cli
peer=$("$PY" benches/image_filter.py "$DIR" "$REPEAT" | tail -n 1)
ours=$(RAYON_NUM_THREADS=1 "$CARGO_TARGET_DIR/release/realsyn" bench image-filter --images "$DIR" --iters "$REPEAT" | tail -n 1)
echo "$peer"; echo "$ours"
python3 - "$peer" "$ours" <<'PY'
import json, sys
peer, ours = (json.loads(s) for s in sys.argv[1:])
print("\n| implementation | images | kept | s | images/s (1 core) | ours / peer |\n|---|---|---|---|---|---|")
for r in (peer, ours):
    print(f"| {r['impl']} | {r['images']} | {r['kept']} | {r['seconds']:.2f} | {r['images_per_s']:,.0f} | "
          f"{r['images_per_s'] / peer['images_per_s']:.1f} |")
PY
