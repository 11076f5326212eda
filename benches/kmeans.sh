#!/usr/bin/env bash
# Spherical k-means, realsyn beside faiss-cpu on the same vectors, K, iterations and
# subsample rule (256 rows per centroid), on the same cores, in one run; then
# hierarchical retrieval against exact search (recall and speed-up, 1/2/4/8 probed
# clusters) at the paper's 420 sentences per cluster and ~100 images per cluster.
#   benches/kmeans.sh [N] [DIM] [K]      (defaults 200000 256 500)
# Needs faiss-cpu + numpy in $PEER_PYTHON (tests/peer/kmeans_fixture.py says how).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}; DIM=${2:-256}; K=${3:-500}; ITERS=10
PY=${PEER_PYTHON:-.peer-venv/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
cargo build --release -q -p realsyn-cli
OUT=out/bench-kmeans; mkdir -p $OUT
"$PY" - "$N" "$DIM" "$OUT/vectors.npy" <<'PY'
import sys, numpy as np
n, d, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
c = rng.normal(size=(max(n // 200, 1), d)).astype(np.float32)
x = c[np.arange(n) % len(c)] + 1.5 * rng.normal(size=(n, d)).astype(np.float32)
x /= np.linalg.norm(x, axis=1, keepdims=True)
np.save(out, x.astype(np.float32))
PY
peer=$("$PY" benches/kmeans.py $OUT/vectors.npy "$K" $ITERS | tail -n 1)
ours=$("$CARGO_TARGET_DIR/release/realsyn" bench kmeans --features $OUT/vectors.npy --k "$K" --iters $ITERS | tail -n 1)
echo "$peer"; echo "$ours"
python3 - "$peer" "$ours" <<'PY'
import json, sys
peer, ours = (json.loads(s) for s in sys.argv[1:])
print("\n| implementation | rows (trained) | d | K | s / iteration | GFLOP/s | objective | speed vs faiss |\n|---|---|---|---|---|---|---|---|")
for r in (peer, ours):
    print(f"| {r['impl']} | {r['n']:,} ({r['training_rows']:,}) | {r['d']} | {r['k']} | {r['seconds_per_iteration']:.3f} | "
          f"{r['gflops']:.0f} | {r['objective']:.1f} | {peer['seconds_per_iteration'] / r['seconds_per_iteration']:.2f}x |")
PY
