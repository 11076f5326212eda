#!/usr/bin/env bash
# Sentences/s on one core: Punkt + emoji/URL/length rules + word counts + entropy,
# realsyn beside NLTK on the same text (the Wikipedia and GIMP fixture texts, each
# paragraph repeated REPEAT times), in one run.   benches/sentences.sh [REPEAT]
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=${1:-5}
PY=${PEER_PYTHON:-.peer-venv/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
cargo build --release -q -p realsyn-cli
TEXT=out/bench-sentences/text.txt
mkdir -p "$(dirname $TEXT)"
python3 -c "
import json
print('\n\n'.join(json.load(open(f'tests/fixtures/punkt/{n}.json'))['text'] for n in ['wikipedia', 'gimp-help']))" > $TEXT
peer=$("$PY" benches/sentences.py $TEXT "$REPEAT" | tail -n 1)
# Ours runs 5x the text (a 0.2 s run is too short to time on a shared machine), three
# times; the median run is reported.
ours=$(for k in 1 2 3; do RAYON_NUM_THREADS=1 "$CARGO_TARGET_DIR/release/realsyn" bench sentences \
    --text $TEXT --iters $((REPEAT * 5)) | tail -n 1; done | python3 -c "
import json, sys
runs = sorted((json.loads(l) for l in sys.stdin), key=lambda r: r['sentences_per_s'])
print(json.dumps(runs[1]))")
echo "$peer"; echo "$ours"
python3 - "$peer" "$ours" <<'PY'
import json, sys
peer, ours = (json.loads(s) for s in sys.argv[1:])
print(f"\n| implementation | sentences | kept by rules | kept by entropy | s | sentences/s (1 core) | ours / peer |\n|---|---|---|---|---|---|---|")
for r in (peer, ours):
    print(f"| {r['impl']} | {r['sentences']} | {r['kept']} | {r['entropy_kept']} | {r['seconds']:.2f} | "
          f"{r['sentences_per_s']:,.0f} | {r['sentences_per_s'] / peer['sentences_per_s']:.1f} |")
PY
