#!/usr/bin/env bash
# Retrieval with a real signal (docs/pairing.md): build the GIMP store, write its
# own-page pairs with 1 in 5 held out (whole pages, or single images of trained
# pages), train a tiny CLIP on them (CPU, minutes), pair the store with it,
# hierarchically (probe 1) and exactly (every cluster), and report how often a
# held-out image gets a sentence of its own page.
#   scripts/own-page-retrieval.sh [pages|images]
set -euo pipefail
cd "$(dirname "$0")/.."
HOLD=${1:-pages}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
cargo build --release -q -p realsyn-cli
BIN=$CARGO_TARGET_DIR/release/realsyn
GIMP=/usr/share/gimp/2.0/help/en
OUT=out/own-page; mkdir -p $OUT
[ -d $OUT/store/dedup-images ] || "$BIN" build all --input $GIMP --store $OUT/store --parts 2 >/dev/null
DATA=data/gimp-own-page-$HOLD RUN=runs/gimp-own-page-$HOLD
rm -rf $DATA $RUN
"$BIN" dataset own-page --store $OUT/store --out $DATA --hold-out $HOLD
n=$(ls $DATA/*.tar | wc -l)
sed -e "s|data/gimp-own-page/{00000..00001}|$DATA/{00000..$(printf %05d $((n - 1)))}|" \
    -e "s|runs/gimp-own-page|$RUN|" recipes/gimp-own-page.toml > $OUT/recipe-$HOLD.toml
"$BIN" train --recipe $OUT/recipe-$HOLD.toml
CKPT=$(ls -d $RUN/checkpoints/step_* | sort | tail -n 1)/model.safetensors
for probe in 1 100000; do
    rm -rf $OUT/paired-$HOLD-$probe
    "$BIN" build all --input $GIMP --store $OUT/paired-$HOLD-$probe --parts 2 \
        --pair-encoder "$CKPT" --probe $probe >/dev/null
    echo "probe $probe, held-out $HOLD: $("$BIN" dataset own-page-rate --store $OUT/paired-$HOLD-$probe --hold-out $HOLD)"
    echo "probe $probe, training images: $("$BIN" dataset own-page-rate --store $OUT/paired-$HOLD-$probe --hold-out $HOLD --training-pages)"
done
