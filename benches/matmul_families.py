#!/usr/bin/env python3
"""Tabulate `realsyn bench matmul` lines per kernel family (REALSYN_MATMUL) beside
torch.matmul's on the same shapes (benches/gpu_lease.sh's matmul phase), and print,
last, the family whose summed time over the non-square shapes (a training step's
own products) is the smallest.

    python3 benches/matmul_families.py smoke.jsonl
"""
import json
import sys
from collections import defaultdict


def shape(r):
    # Lines from before 2026-12-06 have only `size` (a square product).
    return (r.get("m", r.get("size")), r.get("n", r.get("size")), r.get("k", r.get("size")), r.get("layout", "nn"))


def main(path):
    rows = [r for r in map(json.loads, filter(str.strip, open(path))) if r.get("mode") == "matmul"]
    torch, ours = {}, defaultdict(dict)
    for r in rows:
        key = (shape(r), r["dtype"])
        if r["impl"] == "pytorch":
            torch[key] = r
        else:
            ours[r.get("matmul_family", "auto")][key] = r
    keys = sorted({k for v in ours.values() for k in v} | set(torch))
    name = lambda k: "%dx%dx%d %s %s" % (*k[0], k[1])
    print("%-26s" % "TFLOP/s (ratio to torch)" + "".join("%26s" % name(k) for k in keys))
    print("%-26s" % "torch.matmul" + "".join("%26s" % ("%.1f" % torch[k]["tflops"] if k in torch else "-") for k in keys))
    for family, by_key in ours.items():
        cells = []
        for k in keys:
            r = by_key.get(k)
            if r is None:
                cells.append("-")
            elif k in torch:
                cells.append("%.1f (%.2fx)" % (r["tflops"], r["tflops"] / torch[k]["tflops"]))
            else:
                cells.append("%.1f" % r["tflops"])
        print("%-26s" % family + "".join("%26s" % c for c in cells))
    step = [k for k in keys if len(set(k[0][:3])) > 1]
    total = {f: sum(v[k]["median_s"] for k in step) for f, v in ours.items() if all(k in v for k in step)}
    if not total:
        print("auto")
        return
    print(min(total, key=total.get))


if __name__ == "__main__":
    main(sys.argv[1])
