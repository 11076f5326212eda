#!/usr/bin/env bash
# The embedded LLM beside transformers on the same GGUF, prompts, thread count and
# number of generated tokens, in one run: generated tokens/s (prefill included), one
# prompt at a time (batch 1, as transformers runs it), then realsyn batched.
#   benches/llm.sh [N_PROMPTS] [NEW_TOKENS]      (defaults 8 40)
# Needs torch, transformers, gguf and accelerate in $PEER_PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-8}; NEW=${2:-40}; THREADS=${THREADS:-2}
PY=${PEER_PYTHON:-.peer-venv/bin/python}
GGUF=${REALSYN_CACHE:-$HOME/.cache/realsyn}/llm/SmolLM2-135M-Instruct.Q4_1.gguf
PROMPTS=tests/fixtures/llama/prompts.json
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
cargo build --release -q -p realsyn-cli
peer=$("$PY" benches/llm.py "$GGUF" $PROMPTS "$N" "$NEW" "$THREADS" | tail -n 1)
ours=$(RAYON_NUM_THREADS=$THREADS "$CARGO_TARGET_DIR/release/realsyn" bench llm --weights "$GGUF" --text $PROMPTS --n "$N" --new-tokens "$NEW" --batch-size 1 | tail -n 1)
batched=$(RAYON_NUM_THREADS=$THREADS "$CARGO_TARGET_DIR/release/realsyn" bench llm --weights "$GGUF" --text $PROMPTS --n "$N" --new-tokens "$NEW" --batch-size "$N" | tail -n 1)
echo "$peer"; echo "$ours"; echo "$batched"
python3 - "$peer" "$ours" "$batched" <<'PY'
import json, sys
rows = [json.loads(s) for s in sys.argv[1:]]
peer = rows[0]
print("\n| implementation | prompts | prompt tokens | generated | s | tokens/s | vs transformers |\n|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['impl']} | {r['prompts']} | {r['prompt_tokens']} | {r['new_tokens']} | {r['seconds']:.1f} | "
          f"{r['tokens_per_s']:.1f} | {r['tokens_per_s'] / peer['tokens_per_s']:.2f}x |")
PY
