#!/usr/bin/env python3
"""The RealSyn dataset realsyn writes, read by Python `webdataset` and by open_clip's
own training loader (`open_clip_train.data.get_wds_dataset`).

    .peer-venv/bin/python tests/peer/dataset_interop.py REALSYN_BINARY

1. Copies 12 pages of Debian's GIMP manual (gimp-tool-*.html) with their images,
   and runs `realsyn build all` on them with the random tiny CLIP of
   tests/fixtures/tagger (pairing, balance with caps 2 and 4, the dataset writer
   with four variants, 4 samples per shard, images resized to 64 px).
2. Reads every variant with `webdataset.WebDataset` (key, txt, the json's text
   fields, sha256 and size of the jpg) and with `get_wds_dataset`: the training
   path's sample count (from sizes.json) and, through the eval path (which
   exhausts the shards), every tokenized caption and image tensor shape.
3. Writes tests/fixtures/dataset/python-read.json, with the build arguments; the
   Rust test (crates/realsyn-cli/tests/dataset.rs) runs the same build and checks
   that realsyn reads what Python read.
"""
import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import open_clip
import webdataset as wds
from open_clip_train.data import get_wds_dataset
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GIMP = "/usr/share/gimp/2.0/help/en"
PAGES = 12
VARIANTS = ["balanced-2", "balanced-4", "random-2", "all"]
# {input}, {store} and {root} are filled in by this script and by the Rust test.
BUILD_ARGS = [
    "build", "all", "--input", "{input}", "--store", "{store}",
    "--pair-encoder", "{root}/tests/fixtures/tagger/clip.safetensors",
    "--pair-encoder-arch", "{root}/tests/fixtures/tagger/tagger-tiny.json",
    "--no-cat", "--balance-caps", "2,4", "--balance-band", "q0.05..q0.95",
    "--pairs-per-image-cluster", "8",
    "--dataset", "--dataset-variants", ",".join(VARIANTS),
    "--samples-per-shard", "4", "--resize", "64:center_crop",
]


def copy_pages(dst):
    """The first PAGES gimp-tool-* pages with the images they show (as the Rust
    test's `gimp_pages`)."""
    img = re.compile(r'src="(images/[^"]+)"')
    pages = sorted(p for p in os.listdir(GIMP) if p.startswith("gimp-tool-"))[:PAGES]
    os.makedirs(dst, exist_ok=True)
    for page in pages:
        html = open(os.path.join(GIMP, page), encoding="utf-8").read()
        for src in img.findall(html):
            s = os.path.join(GIMP, src)
            if os.path.isfile(s):
                os.makedirs(os.path.dirname(os.path.join(dst, src)), exist_ok=True)
                shutil.copy(s, os.path.join(dst, src))
        shutil.copy(os.path.join(GIMP, page), os.path.join(dst, page))


def pattern(d):
    tars = sorted(f for f in os.listdir(d) if f.endswith(".tar"))
    if len(tars) == 1:
        return os.path.join(d, tars[0])
    return os.path.join(d, "{%s..%s}.tar" % (tars[0][:-4], tars[-1][:-4]))


def read_variant(d):
    samples = {}
    for s in wds.WebDataset(pattern(d), shardshuffle=False):
        meta = json.loads(s["json"])
        im = Image.open(io.BytesIO(s["jpg"]))
        samples[s["__key__"]] = {
            "txt": s["txt"].decode("utf-8"),
            "json": {k: meta.get(k) for k in
                     ["key", "status", "text1", "text2", "text3", "syn_text",
                      "width", "height", "original_width", "original_height",
                      "image_id", "image_cluster"]},
            "jpg_sha256": hashlib.sha256(s["jpg"]).hexdigest(),
            "jpg_size": list(im.size),
        }
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    preprocess = open_clip.image_transform(224, is_train=False)
    args = argparse.Namespace(
        train_data=pattern(d), val_data=pattern(d), train_num_samples=None,
        val_num_samples=None, dataset_resampled=False,
        train_data_upsampling_factors=None, seed=0, batch_size=2, workers=0,
        world_size=1)
    train = get_wds_dataset(args, preprocess, is_train=True, tokenizer=tokenizer)
    val = get_wds_dataset(args, preprocess, is_train=False, tokenizer=tokenizer)
    tokens, shapes = [], set()
    for images, texts in val.dataloader:
        shapes.add(tuple(images.shape[1:]))
        for row in texts.tolist():
            tokens.append([t for t in row if t != 0])
    return {
        "samples": samples,
        "open_clip_train_num_samples": train.dataloader.num_samples,
        "open_clip_tokens": sorted(tokens),
        "open_clip_image_shapes": sorted(list(s) for s in shapes),
    }


def main():
    binary = os.path.abspath(sys.argv[1])
    out = os.path.join(ROOT, "tests/fixtures/dataset")
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pages = os.path.join(tmp, "en")
        copy_pages(pages)
        store = os.path.join(tmp, "store")
        args = [a.format(input=pages, store=store, root=ROOT) for a in BUILD_ARGS]
        subprocess.run([binary] + args, check=True)
        read = {v: read_variant(os.path.join(store, "dataset", v)) for v in VARIANTS}
    fixture = {"pages": PAGES, "build_args": BUILD_ARGS, "variants": read}
    with open(os.path.join(out, "python-read.json"), "w") as f:
        json.dump(fixture, f, indent=1, sort_keys=True)
    print({v: len(r["samples"]) for v, r in read.items()})


if __name__ == "__main__":
    main()
