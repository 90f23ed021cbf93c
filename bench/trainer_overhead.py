"""Trainer overhead: the same jobs run by ``liandan.train``, a hand-written PyTorch loop and
PyTorch Lightning (when installed: ``pip install lightning``; it is not a liandan dependency).

Same data tensors, model, initial weights, optimizer, schedule, batches (order included) and
thread count; every contender validates once per epoch and saves weights once per epoch, as a
hand-written loop would. Contenders alternate over several repeats; figures are ratios of
median wall times of the training loops (data loading and final test evaluation excluded).

liandan picks faster kernels than a hand-written loop gets by default: fused optimizer kernels
and, for convolutional models on a CPU, channels-last weights. ``raw-tuned`` is the hand-written
loop with both, so ``liandan/raw-tuned`` is the trainer's own cost with kernels held equal.

Jobs: ``digits-lenet`` (the preset) and ``mlp-200k`` (an MLP over a 200k-sample synthetic set).

    python bench/trainer_overhead.py [--repeats 5] [--jobs digits-lenet,mlp-200k]

Last line: ``ratio liandan/raw = X`` (the worst job).

On the 2-core CPU sandbox (one thread; 3 runs of 3-5 alternated repeats, session 6): liandan/raw-tuned
1.032 ± 0.012 on digits-lenet and 1.025 ± 0.006 on mlp-200k (1.074 / 1.222 at 19ced90: the lean fused
Adam step, the lazy gradient norm and the batched accuracy tally took the difference); liandan/Lightning
0.69 and 0.28.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

import liandan
from liandan.data.loaders import epoch_order
from liandan.recipe import load_recipe
from liandan.training.run import prepare, seed_everything

# no augmentation: the hand-written contenders do not augment either
COMMON = ["doctor.enabled=false", "train.tensorboard=false", "train.threads=1", "report=false", "data.augment=[]"]
JOBS = {
    "digits-lenet": ("digits-lenet", []),
    "mlp-200k": ({"name": "mlp-200k", "data": {"source": "blobs", "n": 200_000, "features": 32, "classes": 10,
                                               "batch_size": 256, "spread": 4.0},
                  "model": {"name": "mlp", "hidden": [128, 64]}, "train": {"epochs": 2}}, []),
}


def _setup(job: str):
    recipe, extra = JOBS[job]
    rec = load_recipe(recipe, [*COMMON, *extra])
    data, model, _, loss_fn, _ = prepare(rec)  # identical split, normalisation and initial weights
    seed_everything(rec.seed)
    torch.set_num_threads(1)
    n = data.train.num_samples
    bs = rec.data.batch_size
    steps = -(-n // bs)
    total, warm = steps * rec.train.epochs, rec.schedule.warmup_steps
    cosine = rec.schedule.name == "cosine"

    def factor(t: int) -> float:  # the recipe's schedule written by hand: warmup, then cosine or constant
        if t < warm:
            return (t + 1) / (warm + 1)
        return 0.5 * (1 + math.cos(math.pi * (t - warm) / (total - warm))) if cosine else 1.0

    def make_opt(params, fused: bool = False):
        opt = torch.optim.AdamW(params, lr=rec.optim.lr, weight_decay=rec.optim.weight_decay, fused=fused or None)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)

    return rec, data, model, loss_fn, make_opt, n, bs, steps


def raw_loop(job: str, out: Path, tuned: bool = False) -> float:
    """What a user writes by hand: zero_grad / forward / loss / backward / step, val each epoch."""
    rec, data, model, loss_fn, make_opt, n, bs, steps = _setup(job)
    x, y, vx, vy = data.train.x, data.train.y, data.val.x, data.val.y
    if tuned and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last)
    opt, sched = make_opt(model.parameters(), fused=tuned)
    t0 = time.perf_counter()
    for epoch in range(rec.train.epochs):
        model.train()
        order = epoch_order(n, rec.seed, epoch, True)
        for i in range(steps):
            idx = order[i * bs : (i + 1) * bs]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            out_v = model(vx)
            _ = (loss_fn(out_v, vy).item(), (out_v.argmax(1) == vy).float().mean().item())
        torch.save(model.state_dict(), out / "last.pt")
    return time.perf_counter() - t0


def liandan_loop(job: str, out: Path) -> float:
    recipe, extra = JOBS[job]
    run = liandan.train(recipe, overrides=[*COMMON, *extra], out=out, quiet=True)
    return run.summary["wall_s"]


def lightning_loop(job: str, out: Path) -> float:
    import lightning as L
    from torch.utils.data import DataLoader, Sampler, TensorDataset

    rec, data, model, loss_fn, make_opt, n, bs, steps = _setup(job)

    class SameOrder(Sampler):  # the same batches as the other contenders
        def __init__(self) -> None:
            self.epoch = 0

        def __iter__(self):
            order = epoch_order(n, rec.seed, self.epoch, True)
            self.epoch += 1
            return iter([order[i * bs : (i + 1) * bs].tolist() for i in range(steps)])

        def __len__(self) -> int:
            return steps

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def training_step(self, batch, _):
            return loss_fn(self.net(batch[0]), batch[1])

        def validation_step(self, batch, _):
            out_v = self.net(batch[0])
            self.log("val_loss", loss_fn(out_v, batch[1]))

        def configure_optimizers(self):
            opt, sched = make_opt(self.parameters())
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    train_dl = DataLoader(TensorDataset(data.train.x, data.train.y), batch_sampler=SameOrder())
    val_dl = DataLoader(TensorDataset(data.val.x, data.val.y), batch_size=len(data.val.y))
    trainer = L.Trainer(max_epochs=rec.train.epochs, accelerator="cpu", devices=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(out),
                        num_sanity_val_steps=0)
    t0 = time.perf_counter()
    trainer.fit(Module(), train_dl, val_dl)
    return time.perf_counter() - t0


def raw_tuned_loop(job: str, out: Path) -> float:
    return raw_loop(job, out, tuned=True)


CONTENDERS = {"raw": raw_loop, "raw-tuned": raw_tuned_loop, "liandan": liandan_loop, "lightning": lightning_loop}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", default="digits-lenet,mlp-200k")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    names = ["raw", "raw-tuned", "liandan"]
    try:
        import lightning  # noqa: F401

        names.append("lightning")
    except ImportError:
        print("(lightning not installed: comparing liandan with the raw loop only)")
    worst = 0.0
    for job in args.jobs.split(","):
        times: dict[str, list[float]] = {k: [] for k in names}
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.repeats):
                order = names[r % len(names):] + names[: r % len(names)]  # rotate who goes first
                for name in order:
                    out = Path(tmp) / f"{name}{r}"
                    out.mkdir()
                    times[name].append(CONTENDERS[name](job, out))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"\njob {job}\n{'contender':<10} {'median s':>9} {'min s':>7}")
        for k, v in times.items():
            print(f"{k:<10} {med[k]:9.3f} {min(v):7.3f}")
        ratio = med["liandan"] / med["raw"]
        worst = max(worst, ratio)
        print(f"{job}: liandan/raw = {ratio:.3f}", end="")
        print(f", liandan/raw-tuned = {med['liandan'] / med['raw-tuned']:.3f}", end="")
        print(f", liandan/lightning = {med['liandan'] / med['lightning']:.3f}" if "lightning" in med else "")
    print(f"ratio liandan/raw = {worst:.3f}")


if __name__ == "__main__":
    main()
