"""Fixture for realsyn's open-set tagger (crates/realsyn-builder/src/generate/tags.rs):
a small random open_clip CLIP with CLIP's full vocabulary scores RAM tags on real
photos (the scikit-image wheel's skimage/data), each tag embedded as the normalised
mean of the tagger's four prompt templates, as realsyn does.

Writes tests/fixtures/tagger/: clip.safetensors (open_clip names, f16), photos/*.png,
tag_embeddings.npy and image_embeddings.npy (open_clip's), expected.json (tags, per
photo the top 8 tags with their cosines, open_clip's).

    .peer-venv/bin/pip install open_clip_torch==3.3.0 scikit-image
    .peer-venv/bin/python tests/peer/tagger_fixture.py
"""

import json
import os

import numpy as np
import open_clip
import skimage.data
import torch
from PIL import Image
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "tagger")
TEMPLATES = ["a photo of a {}.", "a photo of the {}.", "a picture of a {}.", "an image of {}."]
CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "layers": 2, "width": 64, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
}


def main():
    os.makedirs(os.path.join(OUT, "photos"), exist_ok=True)
    cfg_path = os.path.join(OUT, "tagger-tiny.json")
    json.dump(CFG, open(cfg_path, "w"), indent=2)
    open_clip.add_model_config(cfg_path)
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("tagger-tiny")
    # Stored as f16 and used as the f16 values, so both sides run the same weights.
    sd = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(OUT, "clip.safetensors"))
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    model.eval()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")

    tags = [t.strip() for t in open(os.path.join(ROOT, "crates/realsyn-builder/data/ram/ram_tag_list.txt")) if t.strip()][:400]
    photos = {}
    for name in ["astronaut", "coffee", "chelsea", "rocket"]:
        img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        img.thumbnail((96, 96))
        path = os.path.join(OUT, "photos", f"{name}.png")
        img.save(path)
        photos[name] = Image.open(path).convert("RGB")
    with torch.no_grad():
        emb = []
        for t in tags:
            e = model.encode_text(tokenizer([p.format(t) for p in TEMPLATES]), normalize=True).mean(0)
            emb.append(e / e.norm())
        tag_emb = torch.stack(emb)
        images = torch.stack([preprocess(p) for p in photos.values()])
        img_emb = model.encode_image(images, normalize=True)
        scores = img_emb @ tag_emb.T
    expected = {}
    for name, row in zip(photos, scores):
        top = torch.argsort(-row, stable=True)[:8]
        expected[name] = [[tags[i], float(row[i])] for i in top]
    np.save(os.path.join(OUT, "tag_embeddings.npy"), tag_emb.numpy().astype(np.float32))
    np.save(os.path.join(OUT, "image_embeddings.npy"), img_emb.numpy().astype(np.float32))
    json.dump({"templates": TEMPLATES, "photos": list(photos), "tags": tags, "top": expected,
               "open_clip": open_clip.__version__, "torch": torch.__version__},
              open(os.path.join(OUT, "expected.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
