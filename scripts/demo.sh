#!/usr/bin/env bash
# Build realsyn and run it on real registry data (photos from the scikit-image wheel,
# Wikipedia sentences from the gensim wheel): tokenize, initialise a ViT-B/32, embed
# images and texts, export to open_clip and Hugging Face formats.
# The model is randomly initialised: training arrives with `realsyn train`.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/demo}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
cargo build --release -p realsyn-cli
BIN=$CARGO_TARGET_DIR/release/realsyn
python3 scripts/fetch-registry-data.py "$OUT/data"
head -n 256 "$OUT/data/wiki.txt" > "$OUT/texts.txt"
set -x
"$BIN" tokenize --input "$OUT/texts.txt" --output "$OUT/tokens.npy"
"$BIN" init --arch ViT-B-32 --output "$OUT/vit-b-32.safetensors" --seed 0
"$BIN" embed --weights "$OUT/vit-b-32.safetensors" --images "$OUT/data/photos" --output "$OUT/image_features.npy" --batch-size 16
"$BIN" embed --weights "$OUT/vit-b-32.safetensors" --texts "$OUT/texts.txt" --output "$OUT/text_features.npy" --normalize
"$BIN" convert --input "$OUT/vit-b-32.safetensors" --output "$OUT/vit-b-32.open_clip.safetensors" --to open_clip
"$BIN" convert --input "$OUT/vit-b-32.safetensors" --output "$OUT/vit-b-32-hf" --to hf
set +x
ls -la "$OUT"
