#!/usr/bin/env python3
"""Linear-probe fixture from scikit-learn: tests/fixtures/eval/linear_probe.json.

    .peer-venv/bin/python tests/peer/linear_probe_fixture.py

Features: Fashion-MNIST (Debian dataset-fashion-mnist) images 4x4-average-pooled to
7x7 = 49 values in [0, 1] (sum of 16 bytes / 4080, exact in f32 on both sides); the
first 3,000 training and first 1,000 test images. For each C of the grid,
LogisticRegression(C, lbfgs, multinomial) is fitted on the training images whose
index is not a multiple of 5 and scored on those that are (validation), and fitted
on all 3,000 and scored on test. The Rust test re-derives the features and must
agree within 0.5 accuracy points.
"""
import gzip
import json
import os

import numpy as np
from sklearn.linear_model import LogisticRegression

SRC = "/usr/share/datasets/fashion-mnist"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def idx(name):
    with gzip.open(os.path.join(SRC, name)) as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)


def features(images, n):
    x = images[:n].astype(np.int64).reshape(n, 7, 4, 7, 4).sum(axis=(2, 4)).reshape(n, 49)
    return (x.astype(np.float32) / np.float32(4080.0)).astype(np.float32)


xtr, ytr = features(idx("train-images-idx3-ubyte.gz"), 3000), idx("train-labels-idx1-ubyte.gz")[:3000]
xte, yte = features(idx("t10k-images-idx3-ubyte.gz"), 1000), idx("t10k-labels-idx1-ubyte.gz")[:1000]
val = np.arange(3000) % 5 == 0
grid = [0.01, 0.1, 1.0, 10.0, 100.0]
per_c = {}
for c in grid:
    m = LogisticRegression(C=c, max_iter=5000, tol=1e-8).fit(xtr[~val].astype(np.float64), ytr[~val])
    val_acc = float((m.predict(xtr[val].astype(np.float64)) == ytr[val]).mean())
    full = LogisticRegression(C=c, max_iter=5000, tol=1e-8).fit(xtr.astype(np.float64), ytr)
    test_acc = float((full.predict(xte.astype(np.float64)) == yte).mean())
    per_c[str(c)] = {"val_accuracy": val_acc, "test_accuracy": test_acc}
    print(f"C={c}: val {val_acc:.4f} test {test_acc:.4f}")
best = max(grid, key=lambda c: per_c[str(c)]["val_accuracy"])
out = {"grid": grid, "per_c": per_c, "best_c": best, "test_accuracy": per_c[str(best)]["test_accuracy"],
       "n_train": 3000, "n_test": 1000}
os.makedirs(os.path.join(ROOT, "tests/fixtures/eval"), exist_ok=True)
with open(os.path.join(ROOT, "tests/fixtures/eval/linear_probe.json"), "w") as f:
    json.dump(out, f, indent=1)
