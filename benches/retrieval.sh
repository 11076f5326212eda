#!/usr/bin/env bash
# Hierarchical retrieval against exact search and against faiss's IndexIVFFlat on the
# same synthetic data (docs/pairing.md): realsyn's recall and speed-up for 1/2/4/8
# probed clusters, then faiss's recall with the same K and nprobe.
#   benches/retrieval.sh [N] [NOISE] [LEVELS]     (defaults 1000000 1.5 auto)
# Needs faiss-cpu + numpy in $PEER_PYTHON (tests/peer/kmeans_fixture.py says how).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}; NOISE=${2:-1.5}; LEVELS=${3:-auto}
PY=${PEER_PYTHON:-.peer-venv/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
cargo build --release -q -p realsyn-cli
OUT=out/bench-retrieval; mkdir -p $OUT
"$CARGO_TARGET_DIR/release/realsyn" bench retrieval --n "$N" --noise "$NOISE" \
    --levels "$LEVELS" --dump $OUT | tail -n 1
"$PY" benches/retrieval_faiss.py $OUT
