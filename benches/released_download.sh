#!/usr/bin/env bash
# `realsyn dataset from-released` beside img2dataset on the same released-format
# parquet and loopback server (the GIMP manual's images), in one run.
#   benches/released_download.sh [ROWS] [THREADS]     (defaults 2000 16)
# Needs img2dataset and pyarrow in $PEER_PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}; THREADS=${2:-16}
PY=${PEER_PYTHON:-.peer-venv/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
cargo build --release -q -p realsyn-cli
out=$("$PY" benches/released_download.py "$CARGO_TARGET_DIR/release/realsyn" "$N" "$THREADS")
echo "$out"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in sys.argv[1].splitlines()]
peer = rows[0]
print("\n| implementation | rows | written | s | images/s | vs img2dataset |\n|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['impl']} | {r['rows']} | {r['written']} | {r['seconds']:.1f} | {r['images_per_s']:.0f} | "
          f"{r['images_per_s'] / peer['images_per_s']:.2f}x |")
PY
