#!/usr/bin/env python3
"""The peer side of `realsyn bench`: the same measurement with PyTorch + open_clip.

    python benches/model_bench.py --mode encode-image --arch ViT-B-32 --batch-size 32

Prints one JSON line in the format `realsyn bench` prints.
"""
import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

import open_clip


def random_tokens(n, ctx):
    rows = torch.zeros(n, ctx, dtype=torch.long)
    length = min(20, ctx - 2)
    for r in range(n):
        rows[r, 0] = 49406
        for j in range(1, length + 1):
            rows[r, j] = (r * 7919 + j * 104729) % 49000 + 1
        rows[r, length + 1] = 49407
    return rows


def reset_peak_rss():
    """Count peak memory from here (Linux: 5 -> clear_refs resets VmHWM), as realsyn bench does."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mib():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def matmul(a):
    """Products as `realsyn bench matmul` times them: the GEMM kernels' own rate. Each
    `--shape MxNxK[:tn|:nt]` is one product (`tn`: the left operand a transposed view,
    a weight's gradient x^T dY; `nt`: the right one, the input's gradient dY W^T);
    without one, a square of `--size`. One JSON line per product."""
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    operand = lambda rows, cols: torch.randn(rows, cols, device=dev).to(dtype)
    for shape in a.shape or ["%dx%dx%d" % ((a.size,) * 3)]:
        dims, _, layout = shape.partition(":")
        layout = layout or "nn"
        m, n, k = map(int, dims.split("x"))
        lhs = operand(k, m).t() if layout == "tn" else operand(m, k)
        rhs = operand(n, k).t() if layout == "nt" else operand(k, n)
        times = []
        for i in range(2 + 10):
            t0 = time.perf_counter()
            _ = (lhs @ rhs)[0, 0].item()
            if i >= 2:
                times.append(time.perf_counter() - t0)
        median = sorted(times)[len(times) // 2]
        print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "mode": "matmul", "backend": a.device,
                          "dtype": a.dtype, "m": m, "n": n, "k": k, "layout": layout,
                          "seconds": times, "median_s": median,
                          "tflops": 2 * m * n * k / median / 1e12, "threads": torch.get_num_threads()}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", default="encode-image")
    p.add_argument("--arch", default="ViT-B-32")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--amp", action="store_true", help="bf16 autocast (GPU)")
    p.add_argument("--grad-checkpointing", action="store_true", help="open_clip's --grad-checkpointing (train-step)")
    p.add_argument("--size", type=int, default=2048, help="m = n = k of one square product (matmul)")
    p.add_argument("--shape", action="append", default=[], help="MxNxK[:tn|:nt], repeatable (matmul)")
    p.add_argument("--dtype", default="f32", choices=["f32", "bf16"], help="operand type (matmul)")
    a = p.parse_args()
    if a.mode == "matmul":
        return matmul(a)
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    model = open_clip.create_model(a.arch).to(dev)
    model.set_grad_checkpointing(a.grad_checkpointing)
    size = model.visual.image_size[0]
    ctx = model.context_length
    times = []
    reset_peak_rss()
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.amp)
    if a.mode in ("encode-image", "encode-text"):
        model.eval()
        for i in range(a.warmup + a.iters):
            t0 = time.perf_counter()
            with torch.no_grad(), autocast:
                if a.mode == "encode-image":
                    model.encode_image(torch.randn(a.batch_size, 3, size, size, device=dev))
                else:
                    model.encode_text(random_tokens(a.batch_size, ctx).to(dev))
            sync()
            if i >= a.warmup:
                times.append(time.perf_counter() - t0)
    elif a.mode == "train-step":
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
        labels = torch.arange(a.batch_size, device=dev)
        for i in range(a.warmup + a.iters):
            t0 = time.perf_counter()
            images = torch.randn(a.batch_size, 3, size, size, device=dev)
            tokens = random_tokens(a.batch_size, ctx).to(dev)
            with autocast:
                img, txt, scale = model(images, tokens)[:3]
                logits = scale * img @ txt.T
                loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            sync()
            if i >= a.warmup:
                times.append(time.perf_counter() - t0)
    else:
        raise SystemExit(f"unknown mode {a.mode}")
    median = sorted(times)[len(times) // 2]
    print(json.dumps({"impl": "open_clip-pytorch", "torch": torch.__version__, "backend": a.device + ("-bf16" if a.amp else ""),
                      "mode": a.mode, "arch": a.arch, "batch_size": a.batch_size, "seconds": times,
                      "median_s": median, "items_per_s": a.batch_size / median, "threads": torch.get_num_threads(),
                      "grad_checkpointing": a.grad_checkpointing, "peak_rss_mib": peak_rss_mib()}))


if __name__ == "__main__":
    main()
