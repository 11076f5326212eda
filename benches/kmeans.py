"""faiss-cpu spherical k-means timing, the peer of `realsyn bench kmeans`.

python benches/kmeans.py VECTORS.npy K ITERS  -> one JSON line (seconds per
iteration, GFLOP/s of the assignment, objective over all rows).
"""

import json
import sys
import time

import faiss
import numpy as np

x = np.load(sys.argv[1]).astype(np.float32)
k, iters = int(sys.argv[2]), int(sys.argv[3])
n, d = x.shape
km = faiss.Kmeans(d, k, niter=iters, seed=1234, spherical=True, max_points_per_centroid=256)
t = time.perf_counter()
km.train(x)
seconds = time.perf_counter() - t
train_rows = min(n, k * 256)
index = faiss.IndexFlatIP(d)
index.add(km.centroids)
sims, _ = index.search(x, 1)
per_iter = seconds / iters
print(json.dumps({
    "impl": f"faiss-cpu {faiss.__version__}", "mode": "kmeans", "n": n, "d": d, "k": k,
    "iterations": iters, "training_rows": train_rows, "seconds": seconds,
    "seconds_per_iteration": per_iter,
    "gflops": 2.0 * train_rows * k * d / per_iter / 1e9,
    "objective": float(sims.sum()), "threads": faiss.omp_get_max_threads(),
}))
