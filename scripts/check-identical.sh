#!/usr/bin/env bash
# Check that two realsyn binaries produce the same outputs on the demo's real data:
# the GIMP-manual and Wikipedia builder stores (diff -r, byte for byte), and a
# 60-step Fashion-MNIST training run (checkpoint weights, optimiser state, loss curve)
# with its zero-shot + linear-probe eval JSON. Use it around a refactor:
#
#   git worktree add /tmp/before <old commit> && (cd /tmp/before && cargo build -p realsyn-cli)
#   cp $CARGO_TARGET_DIR/debug/realsyn /tmp/realsyn-before
#   cargo build -p realsyn-cli
#   scripts/check-identical.sh /tmp/realsyn-before $CARGO_TARGET_DIR/debug/realsyn out/identical
#
# Needs scripts/setup-system.sh's data. Exit status 0 when every output is identical.
set -euo pipefail
BEFORE=$(realpath "$1")
AFTER=$(realpath "$2")
OUT=${3:-out/identical}
cd "$(dirname "$0")/.."
WIKI="${REALSYN_CACHE:-$HOME/.cache/realsyn}/gensim/enwiki-excerpt.xml.bz2"
rm -rf "$OUT"
mkdir -p "$OUT"

# Fashion-MNIST shards once (the dataset writer is not under test here).
"$BEFORE" dataset fashion-mnist --out "$OUT/fashion-mnist" >/dev/null 2>&1

for side in before after; do
    BIN=$BEFORE
    [ "$side" = after ] && BIN=$AFTER
    D="$OUT/$side"
    mkdir -p "$D"
    echo "== $side: $BIN" >&2
    "$BIN" build all --input /usr/share/gimp/2.0/help/en --store "$D/build-gimp" --parts 4 >"$D/gimp.txt" 2>/dev/null
    "$BIN" build all --format mediawiki --input "$WIKI" --store "$D/build-wiki" --parts 2 \
        --text-encoder bag-of-words >"$D/wiki.txt" 2>/dev/null
    "$BIN" train --recipe recipes/fashion-mnist.toml \
        --set data.train="\"$OUT/fashion-mnist/train/{00000..00005}.tar\"" \
        --set zeroshot.data="\"$OUT/fashion-mnist\"" \
        --set output.dir="\"$D/run\"" \
        --set data.num_samples=15360 --set train.epochs=1 --set train.max_steps=60 \
        --set train.pct_start=0.3 --set zeroshot.every=0 --set output.checkpoint_every=30 >/dev/null 2>&1
    CKPT=$(ls -d "$D"/run/checkpoints/step_* | tail -n 1)
    "$BIN" eval --model "$CKPT/model.safetensors" --suite zero-shot,linear-probe --templates dataset \
        --max-train 1000 --datasets "fashion-mnist=wds:$OUT/fashion-mnist" --output "$D/eval" >/dev/null 2>&1
    # Losses only: the other columns of metrics.jsonl are timings.
    python3 - "$D/run/metrics.jsonl" >"$D/losses.txt" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "loss" in r:
        print(r["step"], repr(r["loss"]), repr(r["grad_norm"]), repr(r["logit_scale"]))
PY
done

status=0
check() {
    if "$@"; then echo "identical: ${*: -2:1} vs after" >&2; else status=1; fi
}
# recipe.toml: the resolved build recipe, which stores hold since 2026-12-02 (a
# binary from before writes none); manifest.json holds the same settings.
check diff -r -x recipe.toml "$OUT/before/build-gimp" "$OUT/after/build-gimp"
check diff -r -x recipe.toml "$OUT/before/build-wiki" "$OUT/after/build-wiki"
check diff "$OUT/before/gimp.txt" "$OUT/after/gimp.txt"
check diff "$OUT/before/losses.txt" "$OUT/after/losses.txt"
for f in model.safetensors optimizer.safetensors; do
    check cmp "$(ls -d "$OUT"/before/run/checkpoints/step_* | tail -n 1)/$f" \
        "$(ls -d "$OUT"/after/run/checkpoints/step_* | tail -n 1)/$f"
done
# Eval results, less the field naming the checkpoint's path (different by construction).
same_results() {
    python3 - "$1" "$2" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for r in (a, b):
    r.pop("pretrained", None)
sys.exit(0 if a == b else 1)
PY
}
for f in "$OUT"/before/eval/*.json; do
    check same_results "$f" "$OUT/after/eval/$(basename "$f")"
done
if [ $status = 0 ]; then echo "all outputs identical" >&2; else echo "OUTPUTS DIFFER" >&2; fi
exit $status
