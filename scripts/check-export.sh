#!/usr/bin/env bash
# Weights both ways on a real architecture, checked by open_clip itself:
#   open_clip random ViT-B-32 -> realsyn checkpoint -> open_clip export
#   -> open_clip.create_model('ViT-B-32', pretrained=export) embeds the same photos and
#      texts as `realsyn embed` (max abs diff <= 1e-4).
# Photos are cropped to 224x224 first (the eval transform is then exact); a second
# comparison on the original photos shows how close the bicubic resize is to Pillow's.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${1:-ViT-B-32}
OUT=${2:-out/check-export}
PY=${PEER_PYTHON:-.peer-venv/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
cargo build --release -q -p realsyn-cli
BIN=$CARGO_TARGET_DIR/release/realsyn
mkdir -p "$OUT"
[ -d "$OUT/data/photos" ] || python3 scripts/fetch-registry-data.py "$OUT/data"
head -n 64 "$OUT/data/wiki.txt" > "$OUT/texts.txt"
"$PY" tests/peer/model_parity.py crop224 "$OUT/data/photos" "$OUT/photos224"
"$PY" tests/peer/model_parity.py make-random "$ARCH" "$OUT/peer.safetensors"
"$BIN" convert --input "$OUT/peer.safetensors" --arch "$ARCH" --output "$OUT/realsyn.safetensors"
"$BIN" convert --input "$OUT/realsyn.safetensors" --output "$OUT/export.safetensors" --to open_clip
"$BIN" embed --weights "$OUT/realsyn.safetensors" --images "$OUT/photos224" --output "$OUT/img224.npy"
"$BIN" embed --weights "$OUT/realsyn.safetensors" --texts "$OUT/texts.txt" --output "$OUT/txt.npy"
"$PY" tests/peer/model_parity.py check-export "$ARCH" "$OUT/export.safetensors" "$OUT/photos224" "$OUT/texts.txt" "$OUT/img224.npy" "$OUT/txt.npy"
echo "--- original photo sizes (bicubic resize vs Pillow; informative, not asserted):"
"$BIN" embed --weights "$OUT/realsyn.safetensors" --images "$OUT/data/photos" --output "$OUT/img.npy"
"$PY" tests/peer/model_parity.py check-export "$ARCH" "$OUT/export.safetensors" "$OUT/data/photos" "$OUT/texts.txt" "$OUT/img.npy" "$OUT/txt.npy" || true
