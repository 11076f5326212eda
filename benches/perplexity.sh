#!/usr/bin/env bash
# GPT-2 perplexity scoring, realsyn (Burn, CPU) beside transformers (PyTorch, CPU) in
# one run, on the same randomly initialised GPT-2 (the `gpt2` 124M shape by default;
# no GPT-2 weights reach this machine) and the same Wikipedia sentences. Also checks
# that both give the same perplexities.
#   benches/perplexity.sh [N_SENTENCES] [SIZE: gpt2 | gpt2-medium | gpt2-large]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-256}
SIZE=${2:-gpt2}
PY=${PEER_PYTHON:-.peer-venv/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
cargo build --release -q -p realsyn-cli
OUT=out/bench-perplexity
MODEL=$OUT/$SIZE-random
mkdir -p $OUT
if [ ! -f $MODEL/model.safetensors ]; then
    "$PY" - "$SIZE" "$MODEL" <<'PY'
import sys, torch
from transformers import GPT2Config, GPT2LMHeadModel
sizes = {"gpt2": (768, 12, 12), "gpt2-medium": (1024, 24, 16), "gpt2-large": (1280, 36, 20)}
d, l, h = sizes[sys.argv[1]]
torch.manual_seed(0)
GPT2LMHeadModel(GPT2Config(n_embd=d, n_layer=l, n_head=h)).save_pretrained(sys.argv[2])
PY
fi
python3 - "$N" > $OUT/sentences.txt <<'PY'
import json, sys
d = json.loads(open("tests/fixtures/punkt/wikipedia.json").readline())
sents = [d["text"][a:b].replace("\n", " ") for a, b in d["spans"]]
print("\n".join(sents[: int(sys.argv[1])]))
PY
peer=$("$PY" benches/perplexity.py $MODEL $OUT/sentences.txt 8192 3 $OUT/peer.txt | tail -n 1)
ours=$("$CARGO_TARGET_DIR/release/realsyn" bench perplexity --gpt2 $MODEL \
    --text $OUT/sentences.txt --batch-tokens 8192 --iters 3 --output $OUT/ours.txt | tail -n 1)
echo "$peer"; echo "$ours"
python3 - "$peer" "$ours" $OUT/peer.txt $OUT/ours.txt <<'PY'
import json, sys
peer, ours = (json.loads(s) for s in sys.argv[1:3])
a, b = ([None if l == "null" else float(l) for l in open(p).read().split()] for p in sys.argv[3:5])
rel = max(abs(x / y - 1) for x, y in zip(a, b) if x is not None)
print(f"\n| implementation | layers x width | sentences | tokens | s | tokens/s | ours / peer |\n|---|---|---|---|---|---|---|")
for r in (peer, ours):
    print(f"| {r['impl']} | {r['layers']} x {r['width']} | {r['sentences']} | {r['tokens']} | {r['median_s']:.2f} | "
          f"{r['tokens_per_s']:,.0f} | {r['tokens_per_s'] / peer['tokens_per_s']:.2f} |")
print(f"\nmax relative perplexity difference: {rel:.2e}")
PY
