"""Trainer overhead: the same job run by ``liandan.train`` and by a hand-written PyTorch loop.

Same data tensors, model, optimizer, schedule, batches (order included) and thread count; both
validate once per epoch and save weights once per epoch, as a hand-written loop would. The
contenders alternate, several repeats; the figure is the ratio of median wall times of the
training loops (data loading and the final test evaluation excluded from both).

    python bench/trainer_overhead.py [--repeats 5] [--preset digits-lenet]

Last line: ``ratio liandan/raw = X``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import liandan
from liandan.data.loaders import epoch_order
from liandan.recipe import load_recipe
from liandan.train.api import prepare, seed_everything

OVERRIDES = ["doctor.enabled=false", "train.tensorboard=false", "train.threads=1"]


def raw_loop(preset: str, out: Path) -> float:
    """What a user writes by hand: zero_grad / forward / loss / backward / step, val each epoch."""
    rec = load_recipe(preset, OVERRIDES)
    data, model, _, loss_fn, _ = prepare(rec)  # identical data split, normalisation and init
    seed_everything(rec.seed)
    torch.set_num_threads(1)
    x, y = data.train.x, data.train.y
    vx, vy = data.val.x, data.val.y
    bs, n = rec.data.batch_size, len(y)
    steps_per_epoch = -(-n // bs)
    total = steps_per_epoch * rec.train.epochs
    warm = rec.schedule.warmup_steps
    opt = torch.optim.AdamW(model.parameters(), lr=rec.optim.lr, weight_decay=rec.optim.weight_decay)
    import math

    def factor(t: int) -> float:  # linear warmup, then cosine decay (the preset's schedule)
        return (t + 1) / (warm + 1) if t < warm else 0.5 * (1 + math.cos(math.pi * (t - warm) / (total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    t0 = time.perf_counter()
    for epoch in range(rec.train.epochs):
        model.train()
        order = epoch_order(n, rec.seed, epoch, True)
        for i in range(steps_per_epoch):
            idx = order[i * bs : (i + 1) * bs]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            val_loss = loss_fn(model(vx), vy).item()
            val_acc = (model(vx).argmax(1) == vy).float().mean().item()
        torch.save(model.state_dict(), out / "last.pt")
    del val_loss, val_acc
    return time.perf_counter() - t0


def liandan_loop(preset: str, out: Path) -> float:
    run = liandan.train(preset, overrides=OVERRIDES, out=out, quiet=True)
    return run.summary["wall_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="digits-lenet")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    times: dict[str, list[float]] = {"raw": [], "liandan": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = ("raw", "liandan") if r % 2 == 0 else ("liandan", "raw")
            for name in order:
                out = Path(tmp) / f"{name}{r}"
                out.mkdir()
                t = raw_loop(args.preset, out) if name == "raw" else liandan_loop(args.preset, out)
                times[name].append(t)
                print(f"repeat {r}  {name:<8} {t:7.3f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{'contender':<10} {'median s':>9} {'min s':>7}")
    for k, v in times.items():
        print(f"{k:<10} {med[k]:9.3f} {min(v):7.3f}")
    print(f"ratio liandan/raw = {med['liandan'] / med['raw']:.3f}")


if __name__ == "__main__":
    main()
