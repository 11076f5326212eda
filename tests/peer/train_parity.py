#!/usr/bin/env python3
"""Training parity with open_clip / PyTorch: writes tests/fixtures/train/.

    scripts/peer-env.sh   # once: a venv with torch + open_clip_torch (+ open_clip_train)
    .peer-venv/bin/python tests/peer/train_parity.py [OUT_DIR]

- `step.safetensors`: the tiny-gelu model of tests/fixtures/parity, two batches, the
  gradients of each step, and after each of two AdamW steps (open_clip's parameter groups and ClipLoss, the
  OneCycle lr, logit scale clamped to ln 100 as open_clip_train does) the loss and
  every parameter.
- `schedules.json`: torch.optim.lr_scheduler.OneCycleLR learning rates (and Adam
  beta1 when momentum cycles) and open_clip_train's cosine_lr, step by step.
"""
import json
import math
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import open_clip
from open_clip.loss import ClipLoss

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from model_parity import make_tokens  # noqa: E402

PARITY = os.path.join(ROOT, "tests", "fixtures", "parity")


def open_clip_param_groups(model, wd):
    """open_clip_train/main.py: no decay for ndim < 2, bn, ln, bias, logit_scale."""
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n
    named = list(model.named_parameters())
    gain_or_bias = [p for n, p in named if exclude(n, p) and p.requires_grad]
    rest = [p for n, p in named if not exclude(n, p) and p.requires_grad]
    return [{"params": gain_or_bias, "weight_decay": 0.0}, {"params": rest, "weight_decay": wd}]


def step_fixture(out_dir):
    open_clip.add_model_config(os.path.join(PARITY, "tiny-gelu.json"))
    model = open_clip.create_model("tiny-gelu")
    sd = load_file(os.path.join(PARITY, "tiny-gelu.safetensors"))
    model.load_state_dict(sd, strict=False)
    model.train()
    cfg = json.load(open(os.path.join(PARITY, "tiny-gelu.json")))
    size, ctx, vocab = cfg["vision_cfg"]["image_size"], cfg["text_cfg"]["context_length"], cfg["text_cfg"]["vocab_size"]
    rng = np.random.default_rng(1)
    n = 8
    lr_max, total = 1e-3, 20
    opt = torch.optim.AdamW(open_clip_param_groups(model, 0.2), lr=lr_max, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr_max, total_steps=total, pct_start=0.1, cycle_momentum=False)
    loss_fn = ClipLoss()
    out = {}
    for s in (1, 2):
        images = torch.from_numpy(rng.standard_normal((n, 3, size, size)).astype(np.float32))
        tokens = torch.from_numpy(make_tokens(rng, n, ctx, vocab))
        out[f"step{s}.images"] = images
        out[f"step{s}.tokens"] = tokens
        out[f"step{s}.lr"] = torch.tensor([opt.param_groups[0]["lr"]], dtype=torch.float64)
        opt.zero_grad()
        img, txt, scale = model(images, tokens)[:3]
        loss = loss_fn(img, txt, scale)
        loss.backward()
        for k, p in model.named_parameters():
            out[f"step{s}.grad.{k}"] = p.grad.detach().clone().contiguous()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        out[f"step{s}.loss"] = loss.detach().to(torch.float64).reshape(1)
        for k, v in model.state_dict().items():
            if not k.endswith("attn_mask"):
                out[f"step{s}.param.{k}"] = v.detach().clone().contiguous()
        print(f"step {s}: loss {loss.item():.8f} lr {out[f'step{s}.lr'].item():.3e}")
    save_file(out, os.path.join(out_dir, "step.safetensors"))


def schedule_fixture(out_dir):
    cases = []
    for total, pct, div, final_div, max_lr, cycle in [
        (1000, 0.1, 25.0, 1e4, 1e-3, False),
        (37, 0.3, 10.0, 100.0, 5e-4, True),
    ]:
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.AdamW([p], lr=max_lr, betas=(0.9, 0.98))
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=max_lr, total_steps=total, pct_start=pct, div_factor=div, final_div_factor=final_div,
            cycle_momentum=cycle)
        lrs, beta1 = [], []
        for _ in range(total):
            lrs.append(opt.param_groups[0]["lr"])
            beta1.append(opt.param_groups[0]["betas"][0])
            opt.step()
            sched.step()
        cases.append({"kind": "onecycle", "total_steps": total, "pct_start": pct, "div_factor": div,
                      "final_div_factor": final_div, "max_lr": max_lr, "cycle_momentum": cycle,
                      "lr": lrs, "beta1": beta1})
    from open_clip_train.scheduler import cosine_lr, const_lr
    for kind, fn in (("cosine", cosine_lr), ("constant", const_lr)):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.AdamW([p], lr=1e-3)
        total, warmup = 200, 17
        adjust = fn(opt, 1e-3, warmup, total)
        lrs = [adjust(s) for s in range(total)]
        cases.append({"kind": kind, "total_steps": total, "warmup_steps": warmup, "max_lr": 1e-3, "lr": lrs})
    with open(os.path.join(out_dir, "schedules.json"), "w") as f:
        json.dump(cases, f)


if __name__ == "__main__":
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures", "train")
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    step_fixture(out_dir)
    schedule_fixture(out_dir)
    print(f"wrote {out_dir}")
