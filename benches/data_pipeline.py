#!/usr/bin/env python3
"""The peer side of the data-pipeline benchmark, and the shards it runs on.

    python benches/data_pipeline.py make-shards PHOTOS_DIR OUT_DIR [N]
    python benches/data_pipeline.py bench 'OUT_DIR/{00000..00003}.tar' WORKERS BATCH ITERS

`make-shards`: N samples (JPEG re-encodes of the scikit-image photos, 4 texts each,
released-RealSyn layout) with Python webdataset, + sizes.json.
`bench`: Python webdataset + PIL decoding with open_clip's train transform
(RandomResizedCrop(224, scale=(0.9, 1.0), BICUBIC), RGB, ToTensor, Normalize) and
torch's DataLoader with WORKERS processes, batches of BATCH; one JSON line.
"""
import io
import json
import os
import sys
import time


def make_shards(photos, out, n):
    import webdataset as wds
    from PIL import Image

    os.makedirs(out, exist_ok=True)
    srcs = sorted(os.path.join(photos, f) for f in os.listdir(photos) if f.lower().endswith((".png", ".jpg")))
    jpegs = []
    for p in srcs:
        img = Image.open(p).convert("RGB")
        if min(img.size) < 64:
            continue
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        jpegs.append(buf.getvalue())
    per = (n + 3) // 4
    sizes = {}
    for s in range(4):
        name = f"{s:05d}.tar"
        with wds.TarWriter(os.path.join(out, name)) as sink:
            count = 0
            for j in range(per):
                i = s * per + j
                if i >= n:
                    break
                meta = {"text2": f"second {i}", "text3": f"third {i}", "syn_text": f"synthetic {i}"}
                sink.write({"__key__": f"{s:05d}{j:04d}", "jpg": jpegs[i % len(jpegs)], "txt": f"first {i}", "json": meta})
                count += 1
        sizes[name] = count
    with open(os.path.join(out, "sizes.json"), "w") as f:
        json.dump(sizes, f)
    print(f"wrote {n} samples from {len(jpegs)} photos to {out}", file=sys.stderr)


def bench(pattern, workers, batch, iters):
    import random

    import torch
    import webdataset as wds
    import open_clip

    torch.set_num_threads(1)
    transform = open_clip.image_transform(224, is_train=True)

    def pick_text(sample):
        img, txt, meta = sample
        return img, random.choice([txt, meta["text2"], meta["text3"], meta["syn_text"]])

    ds = (wds.WebDataset(pattern, shardshuffle=False, empty_check=False)
          .shuffle(1000)
          .decode("pilrgb")
          .to_tuple("jpg", "txt", "json")
          .map(pick_text)
          .map_tuple(transform, lambda t: t)
          .batched(batch, partial=False))
    times, n = [], 0
    for _ in range(iters):
        loader = wds.WebLoader(ds, batch_size=None, num_workers=workers)
        start = time.perf_counter()
        n = 0
        for images, _texts in loader:
            n += images.shape[0]
        times.append(time.perf_counter() - start)
    times.sort()
    median = times[len(times) // 2]
    print(json.dumps({"impl": "python-webdataset+PIL", "mode": "data", "workers": workers, "images": n,
                      "median_s": median, "images_per_s": n / median}))


if __name__ == "__main__":
    if sys.argv[1] == "make-shards":
        make_shards(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 2048)
    else:
        bench(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
