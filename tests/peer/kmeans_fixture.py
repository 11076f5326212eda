"""k-means fixture: the vectors, and what faiss-cpu's spherical k-means makes of them.

The vectors are a mixture of 40 Gaussian blobs on the unit sphere (d=32, 8,000 rows,
stored as f16 so that both sides read the same numbers). faiss runs
`Kmeans(spherical=True, niter=25, seed=1234, max_points_per_centroid=256)` with K=24
(8,000 > 24 x 256: the subsample path) and K=100 two-level (faiss.contrib's
`two_level_clustering`, 10 coarse clusters). For each, the fixture records faiss's
objective measured the way realsyn measures its own: the sum over ALL rows of the
cosine to the nearest final centroid, and the cluster sizes of that assignment.

Rerun: python3 -m venv /tmp/fv && /tmp/fv/bin/pip install faiss-cpu==1.15.1 numpy
       /tmp/fv/bin/python tests/peer/kmeans_fixture.py
"""

import json
import pathlib

import faiss
import numpy as np
from faiss.contrib.clustering import two_level_clustering

OUT = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "kmeans"
OUT.mkdir(parents=True, exist_ok=True)

rng = np.random.default_rng(20261201)
d, n, blobs = 32, 8000, 40
centres = rng.normal(size=(blobs, d))
which = rng.integers(0, blobs, size=n)
x = centres[which] + 0.6 * rng.normal(size=(n, d))
x /= np.linalg.norm(x, axis=1, keepdims=True)
x16 = x.astype(np.float16)
np.save(OUT / "vectors.npy", x16)
x = x16.astype(np.float32)
x /= np.linalg.norm(x, axis=1, keepdims=True)


def measure(centroids):
    index = faiss.IndexFlatIP(d)
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    sims, assign = index.search(x, 1)
    sizes = np.bincount(assign[:, 0], minlength=centroids.shape[0])
    return float(sims.sum()), sorted(int(s) for s in sizes)


out = {"faiss": faiss.__version__, "rows": n, "d": d}
km = faiss.Kmeans(d, 24, niter=25, seed=1234, spherical=True, max_points_per_centroid=256)
km.train(x)
obj, sizes = measure(km.centroids)
out["flat"] = {"k": 24, "iterations": 25, "max_points_per_centroid": 256,
               "objective": obj, "sizes": sizes}
c2, _ = two_level_clustering(x, 10, 100, spherical=True, seed=1234)
obj, sizes = measure(c2)
out["two_level"] = {"k": 100, "coarse": 10, "iterations": 25, "objective": obj, "sizes": sizes}
(OUT / "faiss.json").write_text(json.dumps(out, indent=1) + "\n")
print(json.dumps({k: (v if not isinstance(v, dict) else {a: b for a, b in v.items() if a != "sizes"}) for k, v in out.items()}))
