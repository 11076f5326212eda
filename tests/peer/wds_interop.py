#!/usr/bin/env python3
"""WebDataset interop with Python `webdataset` (the library open_clip and img2dataset use).

    .peer-venv/bin/python tests/peer/wds_interop.py [FIXTURE_DIR]

1. Writes `python-written/{00000,00001}.tar` with `webdataset.ShardWriter` in the
   released-RealSyn layout img2dataset produces (KEY.jpg, KEY.txt = text1, KEY.json
   with text2/text3/syn_text and img2dataset's metadata), one sample with a list
   field `texts`, and `sizes.json`; `python-written.expected.json` lists what each
   sample holds.
2. Reads `realsyn-written/*.tar` (written by `realsyn dataset fashion-mnist
   --limit-train 12 --per-shard 6`) with `webdataset.WebDataset` and records what
   Python sees in `realsyn-written.python-read.json`.
The Rust tests (crates/realsyn-cli/tests/interop.rs) read both.
"""
import io
import json
import os
import sys

import numpy as np
import webdataset as wds
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def write_python_shards(out):
    d = os.path.join(out, "python-written")
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(0)
    expected = {}
    sizes = {}
    i = 0
    for shard in range(2):
        name = f"{shard:05d}.tar"
        with wds.TarWriter(os.path.join(d, name)) as sink:
            for j in range(5):
                key = f"{shard:05d}{j:04d}"
                img = Image.fromarray(rng.integers(0, 255, (24 + j, 20 + shard, 3), dtype=np.uint8))
                buf = io.BytesIO()
                img.save(buf, format="JPEG", quality=90)
                meta = {"key": key, "status": "success", "url": f"http://example.com/{i}.jpg",
                        "width": img.width, "height": img.height, "original_width": img.width,
                        "original_height": img.height, "text2": f"second {i}", "text3": f"third {i}",
                        "syn_text": f"synthetic {i}"}
                texts = [f"first {i}", f"second {i}", f"third {i}", f"synthetic {i}"]
                if i == 7:
                    meta["texts"] = ["extra a", "extra b"]
                    texts += ["extra a", "extra b"]
                sink.write({"__key__": key, "jpg": buf.getvalue(), "txt": f"first {i}", "json": meta})
                expected[key] = {"texts": texts, "width": img.width, "height": img.height}
                i += 1
        sizes[name] = 5
    with open(os.path.join(d, "sizes.json"), "w") as f:
        json.dump(sizes, f)
    with open(os.path.join(out, "python-written.expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)


def read_realsyn_shards(out):
    d = os.path.join(out, "realsyn-written")
    shards = sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".tar"))
    seen = {}
    for s in wds.WebDataset(shards, shardshuffle=False).decode("pil"):
        meta = s["json"]
        seen[s["__key__"]] = {
            "fields": sorted(k for k in s if not k.startswith("__")),
            "txt": s["txt"],
            "text2": meta["text2"], "text3": meta["text3"], "syn_text": meta["syn_text"],
            "image_size": list(s["jpg"].size),
        }
    with open(os.path.join(out, "realsyn-written.python-read.json"), "w") as f:
        json.dump(seen, f, indent=1, sort_keys=True)
    print(f"python webdataset read {len(seen)} samples from {len(shards)} realsyn shards")


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures", "wds")
    write_python_shards(out)
    read_realsyn_shards(out)
