#!/usr/bin/env bash
# Tokenizer throughput: `realsyn tokenize` beside open_clip's tokenizer on the same
# Wikipedia sentences, same run. Prints texts/s and the ratio (ours / open_clip).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PEER_PYTHON:-.peer-venv/bin/python}
OUT=${1:-out/bench-tokenizer}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
cargo build --release -q -p realsyn-cli
BIN=$CARGO_TARGET_DIR/release/realsyn
mkdir -p "$OUT"
[ -f "$OUT/data/wiki.txt" ] || python3 scripts/fetch-registry-data.py "$OUT/data"
for i in 1 2 3; do cat "$OUT/data/wiki.txt"; done > "$OUT/texts.txt"
N=$(wc -l < "$OUT/texts.txt")
py=$("$PY" - "$OUT/texts.txt" <<'PY'
import sys, time, open_clip
texts = open(sys.argv[1], encoding="utf-8").read().splitlines()
tok = open_clip.get_tokenizer("ViT-B-32")
t0 = time.perf_counter(); tok(texts); print(time.perf_counter() - t0)
PY
)
secs() { "$@" 2>&1 | sed -n 's/.* in \([0-9.]*\)s.*/\1/p'; }
rs2=$(secs "$BIN" tokenize --input "$OUT/texts.txt" --output "$OUT/ids.npy")
rs1=$(RAYON_NUM_THREADS=1 secs "$BIN" tokenize --input "$OUT/texts.txt" --output "$OUT/ids.npy")
python3 - "$N" "$py" "$rs1" "$rs2" <<'PY'
import sys
n, py, rs1, rs2 = int(sys.argv[1]), *map(float, sys.argv[2:])
print(f"{n} texts")
print(f"| implementation | threads | seconds | texts/s | ratio vs open_clip |")
print(f"|---|---|---|---|---|")
print(f"| open_clip SimpleTokenizer (Python) | 1 | {py:.2f} | {n/py:,.0f} | 1.00 |")
print(f"| realsyn ClipTokenizer | 1 | {rs1:.2f} | {n/rs1:,.0f} | {py/rs1:.2f} |")
print(f"| realsyn ClipTokenizer | 2 | {rs2:.2f} | {n/rs2:,.0f} | {py/rs2:.2f} |")
PY
