#!/usr/bin/env python3
"""Peer side of the feature-extraction benchmark: open_clip + webdataset, the way
CLIP_benchmark extracts features from a wds export (decode -> open_clip's eval
preprocess -> encode_image -> L2 normalise), on the same shards as `realsyn bench
features`. Prints one JSON line.

    python benches/feature_extraction.py ROOT [ARCH] [BATCH] [IMAGES] [ITERS]
"""
import glob
import json
import sys
import time

import open_clip
import torch
import torch.nn.functional as F
import webdataset as wds

root = sys.argv[1]
arch = sys.argv[2] if len(sys.argv) > 2 else "ViT-B-32"
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 32
images = int(sys.argv[4]) if len(sys.argv) > 4 else 256
iters = int(sys.argv[5]) if len(sys.argv) > 5 else 1
torch.set_num_threads(torch.get_num_threads())
model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
model.eval()
shards = sorted(glob.glob(f"{root}/test/*.tar"))


def extract(limit):
    ds = (wds.WebDataset(shards, shardshuffle=False, empty_check=False)
          .decode("pil").to_tuple("webp;png;jpg;jpeg", "cls").map_tuple(preprocess, lambda y: y)
          .batched(batch, partial=True))
    feats, n = [], 0
    with torch.no_grad():
        for x, y in ds:
            feats.append(F.normalize(model.encode_image(x), dim=-1))
            n += len(y)
            if n >= limit:
                break
    return min(n, limit)


extract(batch)  # warm-up
seconds = []
for _ in range(iters):
    start = time.perf_counter()
    n = extract(images)
    seconds.append(time.perf_counter() - start)
    assert n == images, f"only {n} images under {root}/test"
seconds.sort()
median = seconds[len(seconds) // 2]
print(json.dumps({"impl": f"open_clip {open_clip.__version__} + webdataset", "backend": "cpu", "mode": "features",
                  "arch": arch, "batch_size": batch, "images": images, "median_s": median,
                  "items_per_s": images / median, "threads": torch.get_num_threads()}))
