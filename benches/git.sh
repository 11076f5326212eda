#!/usr/bin/env bash
# GIT captioning beside transformers in one run: the same git-base-shaped snapshot
# (counter-generated weights, tests/peer/generated_weights.py), the same scikit-image
# photos, the same thread count, NEW tokens per caption, greedy then beam search.
#   benches/git.sh [N_IMAGES] [NEW_TOKENS] [BATCH]      (defaults 8 20 8)
# Needs torch, transformers and scikit-image in $PEER_PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-8}; NEW=${2:-20}; BATCH=${3:-8}; THREADS=${THREADS:-2}
PY=${PEER_PYTHON:-.peer-venv/bin/python}
DIR=${GIT_BENCH_DIR:-${TMPDIR:-/tmp}/realsyn-git-bench}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
cargo build --release -q -p realsyn-cli
"$PY" benches/git.py prepare "$DIR"
rows=()
for beams in 1 3; do
    rows+=("$("$PY" benches/git.py run "$DIR" "$N" "$NEW" $beams "$BATCH" "$THREADS" | tail -n 1)")
    rows+=("$(RAYON_NUM_THREADS=$THREADS "$CARGO_TARGET_DIR/release/realsyn" bench caption \
        --weights "$DIR/git-base-generated" --images "$DIR/images" --n "$N" --new-tokens "$NEW" \
        --beams $beams --batch-size "$BATCH" | tail -n 1)")
done
printf '%s\n' "${rows[@]}"
python3 - "${rows[@]}" <<'PY'
import json, sys
rows = [json.loads(s) for s in sys.argv[1:]]
print("\n| implementation | beams | images | tokens | s | captions/s | tokens/s | vs transformers |\n|---|---|---|---|---|---|---|---|")
for peer, ours in zip(rows[::2], rows[1::2]):
    for r in (peer, ours):
        print(f"| {r['impl']} | {r['beams']} | {r['images']} | {r['new_tokens']} | {r['seconds']:.1f} | "
              f"{r['captions_per_s']:.2f} | {r['tokens_per_s']:.1f} | {r['captions_per_s'] / peer['captions_per_s']:.2f}x |")
PY
