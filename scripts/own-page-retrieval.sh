#!/usr/bin/env bash
# Retrieval with a real signal (docs/pairing.md): build the GIMP store, write its
# own-page pairs (1 page in 5 held out), train a tiny CLIP on them (CPU, minutes),
# pair the store with it, hierarchically (probe 1) and exactly (every cluster),
# and report how often a held-out image gets a sentence of its own page.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
cargo build --release -q -p realsyn-cli
BIN=$CARGO_TARGET_DIR/release/realsyn
GIMP=/usr/share/gimp/2.0/help/en
OUT=out/own-page; mkdir -p $OUT
"$BIN" build all --input $GIMP --store $OUT/store --parts 2 >/dev/null
rm -rf data/gimp-own-page
"$BIN" dataset own-page --store $OUT/store --out data/gimp-own-page
n=$(ls data/gimp-own-page/*.tar | wc -l)
sed "s/{00000..00001}/{00000..$(printf %05d $((n - 1)))}/" recipes/gimp-own-page.toml > $OUT/recipe.toml
"$BIN" train --recipe $OUT/recipe.toml
CKPT=$(ls -d runs/gimp-own-page/checkpoints/step_* | sort | tail -n 1)/model.safetensors
for probe in 1 100000; do
    rm -rf $OUT/paired-$probe
    "$BIN" build all --input $GIMP --store $OUT/paired-$probe --parts 2 \
        --pair-encoder "$CKPT" --probe $probe >/dev/null
    echo "probe $probe, held-out pages: $("$BIN" dataset own-page-rate --store $OUT/paired-$probe)"
    echo "probe $probe, training pages: $("$BIN" dataset own-page-rate --store $OUT/paired-$probe --training-pages)"
done
