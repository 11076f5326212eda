"""faiss's IndexIVFFlat on the data `realsyn bench retrieval --dump DIR` wrote: the
same corpus, the same 1,000 queries, the same number of clusters (spherical
k-means, 25 iterations, faiss's 256 rows per centroid), nprobe 1/2/4/8; recall of
the exact top-3 (IndexFlatIP) beside realsyn's hierarchical retrieval.

    .peer-venv/bin/python benches/retrieval_faiss.py DIR
(benches/retrieval.sh runs both.)
"""

import json
import sys
import time

import faiss
import numpy as np

d_ = sys.argv[1]
x = np.load(f"{d_}/corpus.npy").astype(np.float32)
q = np.load(f"{d_}/queries.npy").astype(np.float32)
ours = json.load(open(f"{d_}/realsyn.json"))
n, d = x.shape
nlist = ours["clusters"]

flat = faiss.IndexFlatIP(d)
flat.add(x)
_, exact = flat.search(q, 3)

quantizer = faiss.IndexFlatIP(d)
ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
t = time.time()
if ours["levels"] == 2:
    # faiss.contrib's two-level k-means (sqrt(K) coarse clusters, each split in
    # proportion to its size), as realsyn's --levels 2; rows go to the nearest of
    # all centroids, as realsyn assigns them by default.
    from faiss.contrib.clustering import two_level_clustering

    centroids, _ = two_level_clustering(x, int(round(nlist ** 0.5)), nlist, rebalance=True,
                                     clustering_niter=25, spherical=True)
    faiss.normalize_L2(centroids)
    quantizer.add(centroids)
    ivf.is_trained = True
else:
    ivf.cp.spherical = True
    ivf.cp.niter = 25
    ivf.cp.seed = 1234
    ivf.train(x)
train_s = time.time() - t
ivf.add(x)

curve = []
for probe in (1, 2, 4, 8):
    ivf.nprobe = probe
    t = time.time()
    _, got = ivf.search(q, 3)
    seconds = time.time() - t
    hits = sum(len(set(g) & set(e)) for g, e in zip(got, exact))
    curve.append({"probe": probe, "recall_at_3": hits / (3 * len(q)), "seconds_for_queries": seconds})

peer = {"impl": "faiss IndexIVFFlat", "levels": ours["levels"], "n": n, "dim": d, "clusters": nlist, "queries": len(q),
        "kmeans_seconds": train_s, "curve": curve, "faiss": faiss.__version__}
print(json.dumps(peer))
print(f"\n| nprobe | faiss {faiss.__version__} IVFFlat recall@3 | realsyn recall@3 |\n|---|---|---|")
for p, r in zip(curve, ours["curve"]):
    print(f"| {p['probe']} | {p['recall_at_3']:.3f} | {r['recall_at_3']:.3f} |")
print(f"\nexact top-3 in the query's own topic (realsyn): {ours['exact_top3_on_topic']:.3f}")
