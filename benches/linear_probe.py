#!/usr/bin/env python3
"""Peer side of the linear-probe benchmark, and its features.

    python benches/linear_probe.py make OUT_DIR [N] [DIM]   # X.npy (f32, L2-normalised), y.npy (i32)
    python benches/linear_probe.py bench OUT_DIR C          # scikit-learn fit time, one JSON line

Features: 10 Gaussian clusters in DIM dimensions with heavy overlap, normalised like
CLIP features. scikit-learn: LogisticRegression(C, lbfgs, tol=1e-4, max_iter=1000).
"""
import json
import os
import sys
import time

import numpy as np


def make(out, n=50000, dim=512):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((10, dim)).astype(np.float32) * 0.012
    y = rng.integers(0, 10, n).astype(np.int32)
    x = centers[y] + rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim) * 3
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.save(os.path.join(out, "X.npy"), x.astype(np.float32))
    np.save(os.path.join(out, "y.npy"), y)


def bench(out, c):
    from sklearn.linear_model import LogisticRegression

    x = np.load(os.path.join(out, "X.npy")).astype(np.float64)
    y = np.load(os.path.join(out, "y.npy"))
    start = time.perf_counter()
    m = LogisticRegression(C=c, tol=1e-4, max_iter=1000).fit(x, y)
    seconds = time.perf_counter() - start
    print(json.dumps({"impl": "scikit-learn", "mode": "linear-probe", "n": len(y), "dim": x.shape[1], "C": c,
                      "seconds": seconds, "iterations": int(m.n_iter_[0]),
                      "train_accuracy": float((m.predict(x) == y).mean())}))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], *(int(a) for a in sys.argv[3:5]))
    else:
        bench(sys.argv[2], float(sys.argv[3]))
