"""The peer of `realsyn bench all-reduce`: torch.distributed.all_reduce of one f32
tensor per rank (gloo on CPU, nccl on CUDA), started as one process per rank with
torchrun-style variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Rank r sends
r + 1 everywhere; every element of the sum must be W(W + 1) / 2. Rank 0 prints one
JSON line shaped like realsyn's."""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--elements", type=int, default=151_277_313)
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cuda = a.device.startswith("cuda")
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    mine = torch.full((a.elements,), float(rank + 1), dtype=torch.float32, device=device)
    expected = world * (world + 1) / 2
    seconds = []
    for i in range(a.warmup + a.iters):
        # A fresh input each time, as realsyn's gradients are (not timed).
        grad = mine.clone()
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        dist.all_reduce(grad)
        first = grad[0].item()
        if i >= a.warmup:
            seconds.append(time.perf_counter() - start)
        assert first == expected and grad[-1].item() == expected, (first, expected)
    if rank == 0:
        median = sorted(seconds)[len(seconds) // 2]  # as realsyn's bench takes it
        algbw = 4 * a.elements / median / 1e9
        print(json.dumps({
            "impl": f"torch.distributed-{'nccl' if cuda else 'gloo'}", "mode": "all-reduce",
            "backend": a.device, "torch": torch.__version__, "world": world,
            "elements": a.elements, "seconds": seconds, "median_s": median,
            "algbw_gbs": algbw, "busbw_gbs": algbw * 2 * (world - 1) / world,
        }))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
