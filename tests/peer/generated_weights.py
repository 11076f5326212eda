"""Counter-based weights for full-size parity fixtures whose weights are too large to
commit (EVA02-B-16, git-base): every tensor is a function of its key and shape, and the
Rust tests (`crates/realsyn-model/tests/common/mod.rs::generated`) compute the same."""
import numpy as np
import torch


def fnv1a64(s: str) -> int:
    h = 0xCBF29CE484222325
    for b in s.encode():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def generated(key: str, shape) -> torch.Tensor:
    """Uniform in a range set by the kind of tensor (LayerNorm gain, bias, matrix)."""
    n = int(np.prod(shape)) if len(shape) else 1
    with np.errstate(over="ignore"):
        z = np.uint64(fnv1a64(key)) + (np.arange(n, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    s = (z >> np.uint64(40)).astype(np.float64) / float(1 << 24) * 2.0 - 1.0  # [-1, 1)
    if key == "logit_scale":
        center, half = float(np.log(1 / 0.07)), 0.0
    elif len(shape) == 1 and key.endswith(".weight"):  # every 1-d weight is a LayerNorm gain
        center, half = 1.0, 0.1
    elif len(shape) <= 1:  # biases
        center, half = 0.0, 0.02
    else:  # matrices: unit-variance outputs for unit-variance inputs
        center, half = 0.0, float(np.sqrt(3.0 / np.prod(shape[1:])))
    return torch.from_numpy((center + s * half).astype(np.float32)).reshape(shape)
