#!/usr/bin/env python3
"""Zero-shot accuracy of a realsyn-trained checkpoint, computed by open_clip.

    .peer-venv/bin/python tests/peer/zeroshot_check.py CONFIG.json CKPT.safetensors DATA_DIR

Loads the checkpoint with open_clip.create_model(pretrained=...), builds the
classifier from DATA_DIR/classnames.txt + zeroshot_classification_templates.txt with
open_clip's tokenizer, and classifies DATA_DIR/test/*.tar with open_clip's eval
preprocess, as CLIP_benchmark does. Compare with `realsyn eval zeroshot`.
"""
import glob
import os
import sys

import torch
import webdataset as wds

import open_clip

cfg, ckpt, data = sys.argv[1:4]
name = os.path.splitext(os.path.basename(cfg))[0]
open_clip.add_model_config(cfg)
model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=ckpt)
model.eval()
tok = open_clip.get_tokenizer(name)
classes = [l.strip() for l in open(os.path.join(data, "classnames.txt")) if l.strip()]
templates = [l.strip() for l in open(os.path.join(data, "zeroshot_classification_templates.txt")) if l.strip()]
with torch.no_grad():
    weights = []
    for c in classes:
        e = model.encode_text(tok([t.replace("{c}", c) for t in templates]))
        e = e / e.norm(dim=-1, keepdim=True)
        m = e.mean(0)
        weights.append(m / m.norm())
    W = torch.stack(weights, 1)
    shards = sorted(glob.glob(os.path.join(data, "test", "*.tar")))
    ds = wds.WebDataset(shards, shardshuffle=False).decode("pilrgb").to_tuple("png", "cls")
    correct = n = 0
    batch, labels = [], []
    def flush():
        global correct, n
        f = model.encode_image(torch.stack(batch))
        f = f / f.norm(dim=-1, keepdim=True)
        pred = (f @ W).argmax(1)
        correct += (pred == torch.tensor(labels)).sum().item()
        n += len(labels)
    for img, cls in ds:
        batch.append(preprocess(img))
        labels.append(int(cls))
        if len(batch) == 500:
            flush(); batch, labels = [], []
    if batch:
        flush()
print(f"open_clip zero-shot top-1 {100 * correct / n:.2f}% on {n} images")
