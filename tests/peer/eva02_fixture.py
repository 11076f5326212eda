#!/usr/bin/env python3
"""EVA02-CLIP parity fixtures: open_clip 3.3.0 + timm 1.0.31 (scripts/peer-requirements.txt).

    scripts/peer-env.sh && .peer-venv/bin/pip install scikit-image
    .peer-venv/bin/python tests/peer/eva02_fixture.py [OUT_DIR]   # default tests/fixtures/eva02

Writes, for crates/realsyn-model/tests/eva02_parity.rs:

- `photos/*.png`: four scikit-image photos put through open_clip's EVA02 eval
  transform up to the crop (bicubic resize of the short side, centre crop), at 224
  and 336 px. The test normalises them itself (ToTensor + Normalize are exact in f32).
- `sentences.txt`: real sentences; their open_clip token ids are in each `*.io.safetensors`.
- `b16-full.io.safetensors`: EVA02-B-16 at full size (149.69M parameters). Its weights
  are NOT committed (600 MB): every tensor is filled by a counter-based generator
  (splitmix64 of fnv1a64(key) + index, uniform, a scale per tensor, see `generated`)
  that the Rust test reimplements, loaded into open_clip with `strict=True`.
- `e-design-tiny` and `l336-design-tiny`: reduced width and depth, same design as
  EVA02-E-14-plus (post-norm blocks, fused qkv with q/v biases, GELU MLP at ratio
  15360/1792, no RoPE) and EVA02-L-14-336 (SwiGLU + sub-LN, RoPE on a 24x24 grid
  rescaled to the 16x16 reference grid). Random init by open_clip/timm, saved as
  open_clip safetensors in f16 and bf16 respectively (the outputs are computed from the
  rounded weights), the E design also as a torch pickle and the L design also in the
  original EVA-CLIP release's key layout (BAAI `EVA02_CLIP_*`: `visual.blocks.N.mlp.w1`,
  `attn.inner_attn_ln`, `attn.q_bias`, rope buffers ...), checked here to map back
  through timm's own `checkpoint_filter_fn`.
- `params.json`: open_clip's parameter count of every shipped EVA02 config (meta device).
"""
import inspect
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

import open_clip
import skimage.data
import timm
from timm.models import register_model
from timm.models.eva import Eva, checkpoint_filter_fn

from generated_weights import generated

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../fixtures/eva02")
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket"]
SENTENCES = [
    "an astronaut in a white suit holding a helmet in front of a flag",
    "a cup of coffee on a saucer with a spoon",
    "a tabby cat lying on a wooden floor",
    "a rocket on the launch pad under a blue sky",
    "The GIMP toolbox holds the painting and selection tools.",
    "Retrieval pairs every image with the three most relevant sentences of the corpus.",
]

# Reduced configs of the two designs, as timm `Eva` kwargs (registered below so open_clip's
# TimmModel builds them exactly as it builds the shipped ones).
E_DESIGN = dict(img_size=224, patch_size=14, embed_dim=112, depth=2, num_heads=2,
                mlp_ratio=15360 / 1792, use_post_norm=True)
L336_DESIGN = dict(img_size=336, patch_size=14, embed_dim=64, depth=2, num_heads=2,
                   mlp_ratio=4 * 2 / 3, qkv_fused=False, swiglu_mlp=True, scale_mlp=True,
                   scale_attn_inner=True, use_rot_pos_emb=True, ref_feat_shape=(16, 16))


def _eva(design, kwargs):
    # timm's factory also passes pretrained_cfg, cache_dir, ...: keep what `Eva` takes.
    known = inspect.signature(Eva.__init__).parameters
    return Eva(**dict(design, **{k: v for k, v in kwargs.items() if k in known}))


@register_model
def realsyn_eva02_e_design_tiny(pretrained=False, **kwargs):
    return _eva(E_DESIGN, kwargs)


@register_model
def realsyn_eva02_l336_design_tiny(pretrained=False, **kwargs):
    return _eva(L336_DESIGN, kwargs)


TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 8, "heads": 2, "layers": 1}


def tiny_config(timm_name, image_size, embed_dim, resolved):
    """open_clip's config, plus the resolved fields realsyn reads (timm knows this name only here)."""
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {"image_size": image_size, "timm_model_name": timm_name,
                       "timm_model_pretrained": False, "timm_pool": "token", "timm_proj": None,
                       **resolved},
        "text_cfg": TINY_TEXT,
        "custom_text": True,
    }


TINY = {
    "e-design-tiny": tiny_config("realsyn_eva02_e_design_tiny", 224, 48, {
        "patch_size": 14, "width": 112, "layers": 2, "head_width": 56, "mlp_ratio": 15360 / 1792,
        "eva": {"qkv_fused": True, "swiglu": False, "scale_mlp": False, "sub_ln": False,
                "post_norm": True, "rope_ref_grid": None}}),
    "l336-design-tiny": tiny_config("realsyn_eva02_l336_design_tiny", 336, 32, {
        "patch_size": 14, "width": 64, "layers": 2, "head_width": 32, "mlp_ratio": 4 * 2 / 3,
        "eva": {"qkv_fused": False, "swiglu": True, "scale_mlp": True, "sub_ln": True,
                "post_norm": False, "rope_ref_grid": 16}}),
}


def crop_photos(size):
    model_tf = open_clip.image_transform(size, is_train=False)
    out = []
    os.makedirs(f"{OUT}/photos", exist_ok=True)
    for name in PHOTOS:
        img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        # open_clip's eval transform: Resize(size, bicubic) -> CenterCrop(size) -> ToTensor -> Normalize
        for t in model_tf.transforms[:2]:
            img = t(img)
        path = f"{OUT}/photos/{name}-{size}.png"
        img.save(path)
        out.append(path)
    norm = model_tf.transforms[-1]
    to_tensor = model_tf.transforms[-2]
    pixels = torch.stack([norm(to_tensor(Image.open(p).convert("RGB"))) for p in out])
    return pixels


def run(model, pixels, tokens):
    model.eval()
    with torch.no_grad():
        return model.encode_image(pixels), model.encode_text(tokens)


def save_io(name, pixels, tokens, img, txt):
    save_file({"tokens": tokens.to(torch.int64).contiguous(),
               "image_features": img.float().contiguous(),
               "text_features": txt.float().contiguous()},
              f"{OUT}/{name}.io.safetensors")
    print(f"{name}: image features {tuple(img.shape)}, text features {tuple(txt.shape)}")


def to_baai(sd):
    """open_clip EVA02 keys -> the EVA-CLIP release's (inverse of timm's checkpoint_filter_fn)."""
    out = {}
    for k, v in sd.items():
        if not k.startswith("visual.trunk."):
            out[k] = v
            continue
        k = "visual." + k[len("visual.trunk."):]
        k = k.replace("mlp.fc1_g", "mlp.w1").replace("mlp.fc1_x", "mlp.w2").replace("mlp.fc2", "mlp.w3")
        k = k.replace("mlp.norm", "mlp.ffn_ln").replace("attn.norm", "attn.inner_attn_ln")
        k = k.replace("attn.q_proj.bias", "attn.q_bias").replace("attn.v_proj.bias", "attn.v_bias")
        out[k] = v
    # EVA-CLIP saves its rope tables as buffers; loaders drop them.
    out["visual.rope.freqs_cos"] = torch.zeros(576, 32)
    out["visual.rope.freqs_sin"] = torch.zeros(576, 32)
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    tokenizer = open_clip.get_tokenizer("EVA02-B-16")
    tokens = tokenizer(SENTENCES)
    with open(f"{OUT}/sentences.txt", "w") as f:
        f.write("\n".join(SENTENCES) + "\n")
    pix224, pix336 = crop_photos(224), crop_photos(336)

    # Full-size EVA02-B-16 with generated weights.
    model = open_clip.create_model("EVA02-B-16")
    sd = {k: generated(k, tuple(v.shape)) for k, v in model.state_dict().items()}
    model.load_state_dict(sd, strict=True)
    save_io("b16-full", pix224, tokens, *run(model, pix224, tokens))
    del model, sd

    for name, cfg in TINY.items():
        oc_cfg = json.loads(json.dumps(cfg))
        del oc_cfg["vision_cfg"]["eva"]  # realsyn's resolved design; open_clip asks timm instead
        open_clip.factory._MODEL_CONFIGS[name] = oc_cfg
        with open(f"{OUT}/{name}.json", "w") as f:
            json.dump(cfg, f, indent=2)
        model = open_clip.create_model(name)
        dtype = torch.float16 if name.startswith("e-") else torch.bfloat16
        sd = {k: v.to(dtype) for k, v in model.state_dict().items()}
        model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
        pixels = pix224 if cfg["vision_cfg"]["image_size"] == 224 else pix336
        save_io(name, pixels, tokens, *run(model, pixels, tokens))
        save_file({k: v.contiguous() for k, v in sd.items()}, f"{OUT}/{name}.safetensors")
        if name.startswith("e-"):
            torch.save(sd, f"{OUT}/{name}.pt")
        else:
            baai = to_baai(sd)
            back = checkpoint_filter_fn(baai, model.visual.trunk)
            trunk = {k[len("visual.trunk."):]: v for k, v in sd.items() if k.startswith("visual.trunk.")}
            assert back.keys() == trunk.keys(), sorted(set(back) ^ set(trunk))
            assert all(torch.equal(back[k], trunk[k]) for k in trunk)
            save_file({k: v.contiguous() for k, v in baai.items()}, f"{OUT}/{name}.eva-clip.safetensors")

    counts = {}
    for n in ["EVA02-B-16", "EVA02-L-14", "EVA02-L-14-336", "EVA02-E-14", "EVA02-E-14-plus"]:
        m = open_clip.create_model(n, device="meta")
        counts[n] = sum(p.numel() for p in m.parameters())
    with open(f"{OUT}/params.json", "w") as f:
        json.dump({"open_clip": open_clip.__version__, "timm": timm.__version__, "params": counts}, f, indent=2)
    print(counts)


if __name__ == "__main__":
    main()
