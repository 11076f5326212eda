#!/usr/bin/env python3
"""Peer side of the image size/aspect filter benchmark: PIL's lazy `Image.open().size`
(header only, as img2dataset-style filters do) + the paper's rule, one core, over every
image file under a folder. Prints one JSON line.   python benches/image_filter.py DIR [REPEAT]
"""
import json
import os
import sys
import time

from PIL import Image

root = sys.argv[1]
repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 1
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
               if f.lower().endswith((".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")))
start = time.perf_counter()
kept = 0
for _ in range(repeat):
    kept = 0
    for f in files:
        try:
            with open(f, "rb") as fh:
                w, h = Image.open(fh).size
        except Exception:
            continue
        kept += min(w, h) >= 100 and 1 / 3 <= w / h <= 3
seconds = time.perf_counter() - start
n = len(files) * repeat
print(json.dumps({"impl": "PIL", "images": n, "kept": kept, "seconds": seconds, "images_per_s": n / seconds}))
