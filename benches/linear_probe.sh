#!/usr/bin/env bash
# Linear-probe fit time on 50,000 x 512 features: realsyn beside scikit-learn, same
# features, same C, same objective, in one run.   benches/linear_probe.sh [C]
set -euo pipefail
cd "$(dirname "$0")/.."
C=${1:-1.0}
PY=${PEER_PYTHON:-.peer-venv/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
cargo build --release -q -p realsyn-cli
DIR=out/bench-probe
[ -f "$DIR/X.npy" ] || "$PY" benches/linear_probe.py make "$DIR" 50000 512
"$PY" benches/linear_probe.py bench "$DIR" "$C"
"$CARGO_TARGET_DIR/release/realsyn" bench linear-probe --features "$DIR/X.npy" --labels "$DIR/y.npy" --c "$C"
