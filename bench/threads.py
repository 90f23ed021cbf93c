"""One torch thread or two? Median training-step time of zoo models with 1 and 2 threads,
alternated, to choose ``train.threads``' default by model size (liandan.training.setup.default_threads).

    python bench/threads.py [--steps 20]

Last line: ``crossover_params = N`` (smallest model for which 2 threads win; 0 if none).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import liandan

CASES = [  # (name, options, input shape, batch)
    ("mlp", {"hidden": [128, 64], "num_classes": 10, "input_shape": (32,)}, (32,), 256),
    ("lenet5", {"num_classes": 10}, (1, 32, 32), 64),
    ("resnet18", {"num_classes": 10, "width": 16, "input_shape": (3, 32, 32)}, (3, 32, 32), 64),
    ("mobilenet_v2", {"num_classes": 10, "width_mult": 0.5, "input_shape": (3, 32, 32)}, (3, 32, 32), 64),
    ("resnet18", {"num_classes": 10, "input_shape": (3, 32, 32)}, (3, 32, 32), 32),
]


def step_time(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, threads: int, steps: int) -> float:
    torch.set_num_threads(threads)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[2:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    print(f"{'model':<14} {'params':>10} {'1 thread ms':>12} {'2 threads ms':>13} {'2/1':>6}")
    crossover = 0
    for name, opts, shape, batch in CASES:
        model = liandan.create_model(name, **opts)
        n = sum(p.numel() for p in model.parameters())
        x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
        t1, t2 = [], []
        for r in range(3):
            for th in ((1, 2) if r % 2 == 0 else (2, 1)):
                (t1 if th == 1 else t2).append(step_time(model, x, y, th, args.steps))
        a, b = statistics.median(t1), statistics.median(t2)
        if b < a and not crossover:
            crossover = n
        print(f"{name:<14} {n:>10,} {a * 1e3:12.2f} {b * 1e3:13.2f} {b / a:6.2f}")
    print(f"crossover_params = {crossover}")


if __name__ == "__main__":
    main()
