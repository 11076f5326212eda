#!/usr/bin/env python3
"""Retrieval fixture from CLIP_benchmark: tests/fixtures/eval/retrieval.json.

    .peer-venv/bin/pip install --no-deps clip-benchmark==1.6.2
    .peer-venv/bin/python tests/peer/retrieval_fixture.py

200 images with 1-5 captions each (like COCO/Flickr's 5), features drawn so that
captions are noisy copies of their image (recall is neither 0 nor 1), scored with
CLIP_benchmark's own `recall_at_k` / `batchify` exactly as its `evaluate` does.
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from clip_benchmark.metrics.zeroshot_retrieval import batchify, recall_at_k

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
rng = np.random.default_rng(0)
n_img, dim = 200, 16
img = rng.standard_normal((n_img, dim)).astype(np.float32)
text_image = []
txt = []
for i in range(n_img):
    for _ in range(int(rng.integers(1, 6))):
        txt.append(img[i] + 1.5 * rng.standard_normal(dim).astype(np.float32))
        text_image.append(i)
images_emb = F.normalize(torch.from_numpy(img), dim=-1)
texts_emb = F.normalize(torch.from_numpy(np.stack(txt)), dim=-1)
scores = texts_emb @ images_emb.t()
positive_pairs = torch.zeros_like(scores, dtype=bool)
positive_pairs[torch.arange(len(scores)), text_image] = True
metrics = {}
for k in (1, 5, 10):
    metrics[f"image_retrieval_recall@{k}"] = (batchify(recall_at_k, scores, positive_pairs, 64, "cpu", k=k) > 0).float().mean().item()
    metrics[f"text_retrieval_recall@{k}"] = (batchify(recall_at_k, scores.T, positive_pairs.T, 64, "cpu", k=k) > 0).float().mean().item()
print(metrics)
out = {"image_features": images_emb.numpy().round(8).tolist(), "text_features": texts_emb.numpy().round(8).tolist(),
       "text_image": text_image, "metrics": metrics}
os.makedirs(os.path.join(ROOT, "tests/fixtures/eval"), exist_ok=True)
with open(os.path.join(ROOT, "tests/fixtures/eval/retrieval.json"), "w") as f:
    json.dump(out, f)
