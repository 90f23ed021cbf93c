"""When does ``train.compile: true`` (``torch.compile``) pay on this machine?

For each model, the same training step (forward, cross entropy, backward, fused AdamW) runs
eagerly and compiled (inductor), alternating, on one torch thread (the trainer's default for
small models). Printed per model: compile time (first compiled step minus an eager step),
steady-state ms/step of both, the speed-up, and the break-even point: the number of steps after
which the compiled run has caught up with the time spent compiling. Compile time is much shorter
once inductor's on-disk cache (``/tmp/torchinductor_$USER``) holds the model: the first run on a
machine pays the full price (14-78 s here for these models), later runs a second or two.

Measured on the 2-core development machine (one thread): compiled steps were *slower* than eager
ones for all three (speed-up 0.91 mlp, 0.68 lenet5, 0.66 transformer), so on this CPU
``train.compile`` never pays for models this small; it is meant for GPUs (bench/gpu.py).

    python bench/compile.py [--models mlp,lenet5,transformer] [--steps 60] [--threads 1]

Last line: ``compile pays after N steps`` for the model where it pays soonest (or ``never``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from liandan.registry import MODELS

# (builder options, input shape, batch size): the shapes of the presets that use them
CASES = {
    "mlp": ({"hidden": [128, 64], "input_shape": (32,)}, (32,), 256),  # the mlp-200k job
    "lenet5": ({"in_channels": 1}, (1, 32, 32), 64),  # digits-lenet
    "transformer": ({"input_shape": (50, 1), "dim": 64, "depth": 2}, (50, 1), 32),  # adding-problem size
    "resnet18": ({"width": 16, "in_channels": 3}, (3, 32, 32), 64),  # shapes-resnet18
}


def step_fn(model: torch.nn.Module, net, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    return step


def timed(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def measure(name: str, steps: int) -> dict:
    opts, shape, bs = CASES[name]
    torch.manual_seed(0)
    eager_model = MODELS.get(name).fn(num_classes=10, **opts)
    compiled_model = MODELS.get(name).fn(num_classes=10, **opts)
    compiled_model.load_state_dict(eager_model.state_dict())
    x, y = torch.randn(bs, *shape), torch.randint(0, 10, (bs,))
    eager = step_fn(eager_model, eager_model, x, y)
    compiled = step_fn(compiled_model, torch.compile(compiled_model), x, y)
    eager()  # warm-up (allocator, oneDNN primitive caches)
    first_eager = timed(eager, 1)
    t0 = time.perf_counter()
    compiled()  # compiles forward and backward
    compile_s = time.perf_counter() - t0 - first_eager
    e_ms, c_ms = [], []
    for _ in range(3):  # alternate so both see the same machine load
        e_ms.append(timed(eager, steps // 3) * 1e3)
        c_ms.append(timed(compiled, steps // 3) * 1e3)
    e, c = statistics.median(e_ms), statistics.median(c_ms)
    saved = (e - c) / 1e3
    return {"model": name, "compile_s": compile_s, "eager_ms": e, "compiled_ms": c, "speedup": e / c,
            "break_even": compile_s / saved if saved > 0 else float("inf")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mlp,lenet5,transformer")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(m, args.steps) for m in args.models.split(",")]
    print(f"{'model':<12} {'compile s':>9} {'eager ms':>9} {'compiled ms':>11} {'speed-up':>8} {'break-even':>10}")
    for r in rows:
        be = f"{r['break_even']:.0f}" if r["break_even"] != float("inf") else "never"
        print(f"{r['model']:<12} {r['compile_s']:9.1f} {r['eager_ms']:9.2f} {r['compiled_ms']:11.2f} "
              f"{r['speedup']:8.2f} {be:>10}")
    best = min(rows, key=lambda r: r["break_even"])
    verdict = f"{best['break_even']:.0f} steps ({best['model']})" if best["break_even"] != float("inf") else "never"
    print(f"compile pays after {verdict}")


if __name__ == "__main__":
    main()
