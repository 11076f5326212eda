#!/usr/bin/env python3
"""Writes the binary seeds of corpus/ (the text seeds are written by hand):

    .peer-venv/bin/python crates/realsyn-fuzz/make_seeds.py

images (PNG, JPEG, GIF, BMP, WebP, TIFF, 16x12), a WebDataset tar of two samples
(jpg + txt + json, one sample with a cls), safetensors (f32, f16, bf16 tensors) and
torch pickles (a state dict, an open_clip-style checkpoint dict).
"""
import io
import json
import os
import tarfile

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
rng = np.random.default_rng(0)
img = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))

os.makedirs(f"{HERE}/image", exist_ok=True)
for fmt, ext in [("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"), ("BMP", "bmp"), ("WEBP", "webp"), ("TIFF", "tif")]:
    img.save(f"{HERE}/image/seed.{ext}", fmt)
img.convert("L").save(f"{HERE}/image/grey.png")

os.makedirs(f"{HERE}/tar", exist_ok=True)
with tarfile.open(f"{HERE}/tar/two-samples.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
    jpg = io.BytesIO()
    img.save(jpg, "JPEG")
    for key, fields in [("00000000", {"jpg": jpg.getvalue(), "txt": b"a red square",
                                       "json": json.dumps({"text1": "a red square", "syn_text": "red"}).encode()}),
                        ("00000001", {"jpg": jpg.getvalue(), "cls": b"3"})]:
        for ext, data in fields.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))

os.makedirs(f"{HERE}/safetensors", exist_ok=True)
save_file({"a.weight": torch.ones(2, 3), "b": torch.arange(4, dtype=torch.float16)}, f"{HERE}/safetensors/two.safetensors",
          metadata={"format": "pt"})
save_file({"x": torch.zeros(3, dtype=torch.bfloat16)}, f"{HERE}/safetensors/bf16.safetensors")

os.makedirs(f"{HERE}/pickle", exist_ok=True)
torch.save({"a.weight": torch.ones(2, 3), "b": torch.arange(4.0)}, f"{HERE}/pickle/state-dict.pt")
torch.save({"epoch": 1, "state_dict": {"module.x": torch.zeros(2)}}, f"{HERE}/pickle/checkpoint.pt")
# A view far larger than its storage (2^40 elements over 6 floats, stride 0): legal in
# torch, refused by realsyn's reader before burn-store would zero-pad it to 4 TB.
torch.save({"big": torch.ones(6)[:1].expand(1 << 20, 1 << 20)}, f"{HERE}/pickle/huge-view.pt")
