"""Achieved FLOP/s and model FLOPs utilisation (MFU), as nanoGPT reports it.

Training FLOPs per sample = 3 × forward FLOPs (the backward pass costs about twice the
forward: gradients with respect to activations and to weights; Kaplan et al. 2020, §2.1); tasks
with several networks count their own (``Task.train_flops``: a GAN step runs G and D unevenly).
Forward FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one sample.
The peak comes from a table for CUDA devices, and for a CPU from a GEMM probe measured once
and cached under ``$LIANDAN_HOME`` (default ``~/.liandan``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from torch import nn

# dense bf16/fp16 tensor-core peaks (no sparsity), FLOP/s
CUDA_PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "V100": 125e12,
              "T4": 65e12, "RTX 4090": 165e12, "RTX 3090": 71e12}


def home() -> Path:
    """liandan's state folder (inside the agents' roots while they are active: :mod:`liandan.paths`)."""
    from liandan.paths import state_home

    return state_home()


@torch.no_grad()
def forward_flops(model: nn.Module, sample: torch.Tensor) -> int:
    """FLOPs of one forward pass on ``sample`` (a batch of one)."""
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as fc:
            model(sample)
        return int(fc.get_total_flops())
    except Exception:  # noqa: BLE001 (exotic ops: report no MFU rather than fail a run)
        return 0
    finally:
        model.train(was)


def peak_flops(device: torch.device, threads: int) -> float | None:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return next((v for k, v in CUDA_PEAKS.items() if k in name), None)
    if device.type != "cpu":
        return None
    from liandan.errors import LiandanError
    from liandan.paths import check_path, read_text

    cache = home() / "peak_flops.json"
    key = f"cpu-{os.cpu_count()}-threads{threads}"
    try:
        table = json.loads(read_text(cache, "FLOPS cache"))
    except (OSError, ValueError, LiandanError):  # LiandanError: a planted link out of the agents' roots
        table = {}
    if key not in table:
        table[key] = _gemm_probe(threads)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            check_path(cache, "FLOPS cache").write_text(json.dumps(table))
        except (OSError, LiandanError):
            pass
    return table[key]


def _gemm_probe(threads: int, n: int = 512, seconds: float = 0.3) -> float:
    """Best fp32 GEMM rate over a short burst: the CPU's practical peak for dense math."""
    from liandan.training.setup import torch_threads

    a, b = torch.randn(n, n), torch.randn(n, n)
    best, t_end = 0.0, time.perf_counter() + seconds
    with torch_threads(threads):
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            for _ in range(4):
                a @ b
            best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t0))
    return best


def utilisation(train_flops: int, samples: int, wall_s: float, peak: float | None) -> dict:
    """Achieved FLOP/s and MFU from the training FLOPs per sample (a task's ``train_flops``)."""
    achieved = train_flops * samples / wall_s if wall_s > 0 else 0.0
    return {"train_flops_per_sample": train_flops, "achieved_flops_per_s": round(achieved, 1),
            "peak_flops_per_s": peak, "mfu": round(achieved / peak, 4) if peak else None}
