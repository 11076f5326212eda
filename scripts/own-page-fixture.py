"""The own-page retrieval test's model (tests/fixtures/own-page/model.safetensors):
the tiny CLIP `scripts/own-page-retrieval.sh images` trains, with the token
embedding rows that no sentence of the GIMP store uses set to zero. Those rows never
enter an embedding of this corpus, so the test's results are the trained model's,
and the zero rows let git compress the file from 22 MB to 5.

    .peer-venv/bin/python scripts/own-page-fixture.py CHECKPOINT/model.safetensors \
        out/own-page/store tests/fixtures/own-page/model.safetensors
"""

import glob
import json
import sys

import numpy as np
import open_clip
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

src, store, dst = sys.argv[1:4]
tensors = load_file(src)
with safe_open(src, "np") as f:
    metadata = f.metadata()  # the model's config: realsyn reads it
vocab = 49408
used = {0, vocab - 2, vocab - 1}  # padding, start and end of text
tok = open_clip.get_tokenizer("ViT-B-32")
for path in sorted(glob.glob(f"{store}/dedup-text/part-*/sentences.jsonl")):
    texts = [json.loads(line)["text"] for line in open(path, encoding="utf-8")]
    for i in range(0, len(texts), 1024):
        used.update(np.unique(tok(texts[i : i + 1024]).numpy()).tolist())
pruned = []
for name, t in tensors.items():
    if t.ndim == 2 and t.shape[0] == vocab:
        mask = np.zeros(vocab, dtype=bool)
        mask[sorted(used)] = True
        t = t.copy()
        t[~mask] = 0
        tensors[name] = t
        pruned.append(name)
print(f"{len(used)} of {vocab} token rows used; zeroed the rest of {pruned}")
save_file(tensors, dst, metadata=metadata)
