#!/usr/bin/env python3
"""Model parity with open_clip, both ways.

    pip install open_clip_torch transformers safetensors
    python tests/peer/model_parity.py fixtures [OUT_DIR]       # write tests/fixtures/parity
    python tests/peer/model_parity.py check-export ARCH WEIGHTS IMAGES_DIR TEXTS EXPECT_IMG.npy EXPECT_TXT.npy
    python tests/peer/model_parity.py make-random ARCH OUT.safetensors
    python tests/peer/model_parity.py crop224 SRC_DIR DST_DIR

`fixtures`: random-init small open_clip models (one GELU, one QuickGELU), their
weights as open_clip safetensors, a torch `.pt` state dict and a Hugging Face
`CLIPModel` directory, plus inputs and open_clip's image/text features and logits.
The HF copy is checked against open_clip here before it is written.

`check-export`: load weights written by `realsyn convert` with
`open_clip.create_model(ARCH, pretrained=WEIGHTS)`, embed the images (open_clip's
eval preprocess) and texts (open_clip's tokenizer), and compare with the
embeddings `realsyn embed` wrote.
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

import open_clip

TINY = {
    "tiny-gelu": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "patch_size": 8, "layers": 2, "width": 64, "head_width": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 1000, "width": 48, "heads": 4, "layers": 2},
    },
    "tiny-quickgelu": {
        "embed_dim": 24,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 48, "patch_size": 16, "layers": 3, "width": 64, "head_width": 16, "mlp_ratio": 2.0},
        "text_cfg": {"context_length": 16, "vocab_size": 500, "width": 32, "heads": 2, "layers": 2},
    },
}


def make_tokens(rng, n, ctx, vocab):
    """Rows like the CLIP tokenizer's: SOT, ids, EOT (the largest id), zero padding."""
    sot, eot = vocab - 2, vocab - 1
    rows = np.zeros((n, ctx), dtype=np.int64)
    for i in range(n):
        length = ctx - 2 if i == 0 else int(rng.integers(0, ctx - 2))
        rows[i, 0] = sot
        rows[i, 1 : 1 + length] = rng.integers(1, vocab - 2, size=length)
        rows[i, 1 + length] = eot
    return rows


def register(name, cfg, out_dir):
    path = os.path.join(out_dir, f"{name}.json")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    open_clip.add_model_config(path)
    return path


def to_hf(model, cfg):
    """Copy open_clip weights into transformers' CLIPModel."""
    from transformers import CLIPConfig, CLIPModel

    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    act = "quick_gelu" if cfg.get("quick_gelu") else "gelu"
    hf_cfg = CLIPConfig(
        projection_dim=cfg["embed_dim"],
        text_config=dict(vocab_size=t["vocab_size"], hidden_size=t["width"], intermediate_size=int(t["width"] * t.get("mlp_ratio", 4.0)),
                         num_hidden_layers=t["layers"], num_attention_heads=t["heads"], max_position_embeddings=t["context_length"],
                         hidden_act=act, layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1),
        vision_config=dict(hidden_size=v["width"], intermediate_size=int(v["width"] * v.get("mlp_ratio", 4.0)),
                           num_hidden_layers=v["layers"], num_attention_heads=v["width"] // v.get("head_width", 64),
                           image_size=v["image_size"], patch_size=v["patch_size"], hidden_act=act, layer_norm_eps=1e-5),
    )
    hf = CLIPModel(hf_cfg).eval()
    sd = model.state_dict()
    new = {}
    def block(src, dst, i):
        s, d = f"{src}.resblocks.{i}", f"{dst}.encoder.layers.{i}"
        q, k, vv = sd[f"{s}.attn.in_proj_weight"].chunk(3)
        qb, kb, vb = sd[f"{s}.attn.in_proj_bias"].chunk(3)
        new.update({f"{d}.self_attn.q_proj.weight": q, f"{d}.self_attn.k_proj.weight": k, f"{d}.self_attn.v_proj.weight": vv,
                    f"{d}.self_attn.q_proj.bias": qb, f"{d}.self_attn.k_proj.bias": kb, f"{d}.self_attn.v_proj.bias": vb})
        for a, b in [("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                     ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")]:
            for p in ["weight", "bias"]:
                new[f"{d}.{b}.{p}"] = sd[f"{s}.{a}.{p}"]
    for i in range(v["layers"]):
        block("visual.transformer", "vision_model", i)
    for i in range(t["layers"]):
        block("transformer", "text_model", i)
    new.update({
        "vision_model.embeddings.class_embedding": sd["visual.class_embedding"],
        "vision_model.embeddings.patch_embedding.weight": sd["visual.conv1.weight"],
        "vision_model.embeddings.position_embedding.weight": sd["visual.positional_embedding"],
        "vision_model.pre_layrnorm.weight": sd["visual.ln_pre.weight"], "vision_model.pre_layrnorm.bias": sd["visual.ln_pre.bias"],
        "vision_model.post_layernorm.weight": sd["visual.ln_post.weight"], "vision_model.post_layernorm.bias": sd["visual.ln_post.bias"],
        "visual_projection.weight": sd["visual.proj"].T.contiguous(),
        "text_model.embeddings.token_embedding.weight": sd["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": sd["positional_embedding"],
        "text_model.final_layer_norm.weight": sd["ln_final.weight"], "text_model.final_layer_norm.bias": sd["ln_final.bias"],
        "text_projection.weight": sd["text_projection"].T.contiguous(),
        "logit_scale": sd["logit_scale"],
    })
    missing, unexpected = hf.load_state_dict(new, strict=False)
    assert not unexpected and all("position_ids" in m for m in missing), (missing, unexpected)
    return hf


def fixtures(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    for name, cfg in TINY.items():
        register(name, cfg, out_dir)
        model = open_clip.create_model(name).eval()
        with torch.no_grad():
            model.logit_scale.fill_(float(np.log(42.0)))  # not the init value, so it is really loaded
            # open_clip zero-inits biases / LN; randomise them so the fixture exercises every tensor
            for k, p in model.named_parameters():
                if k.endswith(".bias") or "ln" in k:
                    p.add_(torch.randn_like(p) * 0.1)
        sd = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("attn_mask")}
        save_file(sd, os.path.join(out_dir, f"{name}.safetensors"), metadata={"format": "pt"})
        size, ctx, vocab = cfg["vision_cfg"]["image_size"], cfg["text_cfg"]["context_length"], cfg["text_cfg"]["vocab_size"]
        images = torch.from_numpy(rng.standard_normal((3, 3, size, size)).astype(np.float32))
        tokens = torch.from_numpy(make_tokens(rng, 5, ctx, vocab))
        with torch.no_grad():
            img = model.encode_image(images)
            txt = model.encode_text(tokens)
            img_n, txt_n, scale = model(images, tokens)[:3]
            logits = scale * img_n @ txt_n.T
        save_file({"images": images, "tokens": tokens.to(torch.int64), "image_features": img, "text_features": txt,
                   "logits_per_image": logits}, os.path.join(out_dir, f"{name}.io.safetensors"))
        if name == "tiny-gelu":
            hf = to_hf(model, cfg)
            with torch.no_grad():
                hf_img = hf.get_image_features(pixel_values=images)
                hf_txt = hf.get_text_features(input_ids=tokens)
                hf_img = getattr(hf_img, "pooler_output", hf_img)
                hf_txt = getattr(hf_txt, "pooler_output", hf_txt)
            assert torch.allclose(hf_img, img, atol=1e-5) and torch.allclose(hf_txt, txt, atol=1e-5), "HF copy differs"
            hf.save_pretrained(os.path.join(out_dir, f"{name}-hf"), safe_serialization=True)
        else:
            torch.save(sd, os.path.join(out_dir, f"{name}.pt"))
        print(f"{name}: {sum(p.numel() for p in model.parameters())} params, |img| {img.abs().mean():.3f}, |txt| {txt.abs().mean():.3f}")


def check_export(arch, weights, images_dir, texts_path, expect_img, expect_txt):
    if os.path.exists(arch):
        open_clip.add_model_config(arch)
        arch = os.path.splitext(os.path.basename(arch))[0]
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=weights)
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch)
    from PIL import Image
    files = sorted(f for f in os.listdir(images_dir) if not f.startswith("."))
    images = torch.stack([preprocess(Image.open(os.path.join(images_dir, f))) for f in files])
    texts = open(texts_path, encoding="utf-8").read().splitlines()
    with torch.no_grad():
        img = model.encode_image(images).numpy()
        txt = model.encode_text(tokenizer(texts)).numpy()
    ours_img, ours_txt = np.load(expect_img), np.load(expect_txt)
    di, dt = np.abs(img - ours_img).max(), np.abs(txt - ours_txt).max()
    print(f"open_clip.create_model({arch!r}, pretrained={weights!r}) loaded; {len(files)} images, {len(texts)} texts")
    print(f"max |open_clip - realsyn|: image features {di:.2e}, text features {dt:.2e}")
    if max(di, dt) > 1e-4:
        sys.exit("export round trip FAILED (tolerance 1e-4)")
    print("export round trip OK (tolerance 1e-4)")


def make_random(arch, out):
    """Random-init open_clip weights: the peer's own export, for check-export."""
    torch.manual_seed(0)
    model = open_clip.create_model(arch)
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("attn_mask")}
    save_file(sd, out, metadata={"format": "pt"})


def crop224(src, dst):
    """224x224 RGB crops of the photos, so both sides read identical pixels."""
    from PIL import Image
    os.makedirs(dst, exist_ok=True)
    for f in sorted(os.listdir(src)):
        img = Image.open(os.path.join(src, f)).convert("RGB")
        w, h = img.size
        if min(w, h) < 224:
            continue
        left, top = (w - 224) // 2, (h - 224) // 2
        img.crop((left, top, left + 224, top + 224)).save(os.path.join(dst, os.path.splitext(f)[0] + ".png"))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "make-random":
        make_random(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "crop224":
        crop224(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 2 and sys.argv[1] == "fixtures":
        fixtures(sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/parity")
    elif len(sys.argv) == 8 and sys.argv[1] == "check-export":
        check_export(*sys.argv[2:])
    else:
        sys.exit(__doc__)
