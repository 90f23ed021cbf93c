"""Doctor overhead: training step time with the doctor's probes on and off, on the digits-lenet
preset (LeNet-5 on 32×32 digits, one thread).

The two settings alternate over several repeats (same recipe, seed, data order and initial
weights). Step time = mean interval between consecutive ``on_step_end`` calls within an epoch
(validation and checkpoints at epoch ends are excluded; they are identical for both settings).
Probe steps are included, so the mean carries their amortised cost. The table also shows the
whole-fit wall time, which additionally holds the doctor's per-epoch work (identical-unit check,
rules, the probe log).

    python bench/doctor_overhead.py [--repeats 3] [--epochs N] [--clock wall|cpu]   (default: the preset's epochs)

``--clock cpu`` times steps by the CPU time of the training thread (``time.thread_time``; one torch
thread, so all of a step's compute runs there) instead of the wall clock: on a shared machine other
processes stretch wall-clock steps at random, CPU time counts only this process's work.

Last line: ``ratio on/off = X`` (median step time on / median step time off). Target ≤ 1.05.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import liandan
from liandan.training.callbacks import Callback

COMMON = {"train.tensorboard": False, "train.threads": 1, "train.checkpoint_every": 0}


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


class StepClock(Callback):
    """Intervals between consecutive optimizer steps of the same epoch."""

    def __init__(self, clock=time.perf_counter) -> None:
        self.clock = clock
        self.last: tuple[int, float] | None = None
        self.intervals: list[float] = []

    def on_step_end(self, trainer, loss, grad_norm, applied) -> None:  # noqa: ARG002
        now = self.clock()
        if self.last is not None and self.last[0] == trainer.state.epoch:
            self.intervals.append(now - self.last[1])
        self.last = (trainer.state.epoch, now)


def one_run(doctor: bool, epochs: int | None, root: Path, i: int, timer=time.perf_counter) -> tuple[float, float]:
    clock = StepClock(timer)
    over = {**COMMON, "doctor.enabled": doctor, **({"train.epochs": epochs} if epochs else {})}
    run = liandan.train("digits-lenet", overrides=over, out=root / f"{'on' if doctor else 'off'}-{i}",
                        callbacks=[clock], quiet=True)
    return statistics.fmean(clock.intervals), run.summary["wall_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="step timer (cpu: this thread's CPU time)")
    args = ap.parse_args()
    timer = CLOCKS[args.clock]
    torch.set_num_threads(1)
    res: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="doctor-overhead-") as tmp:
        one_run(False, 1, Path(tmp), -1)  # warm-up: imports, allocator, data cache
        for i in range(args.repeats):
            for doctor in ((False, True) if i % 2 == 0 else (True, False)):  # alternate the order
                res[doctor].append(one_run(doctor, args.epochs, Path(tmp), i, timer))
    print(f"digits-lenet, {args.epochs or 'preset'} epochs × {args.repeats} repeats (alternating), 1 thread, "
          f"{args.clock} clock")
    print(f"{'doctor':<8}{'step ms (median)':>18}{'step ms (min..max)':>24}{'fit wall s (median)':>22}")
    for doctor in (False, True):
        steps = [s * 1e3 for s, _ in res[doctor]]
        walls = [w for _, w in res[doctor]]
        print(f"{'on' if doctor else 'off':<8}{statistics.median(steps):>18.3f}"
              f"{f'{min(steps):.3f}..{max(steps):.3f}':>24}{statistics.median(walls):>22.3f}")
    on = statistics.median(s for s, _ in res[True])
    off = statistics.median(s for s, _ in res[False])
    wall = statistics.median(w for _, w in res[True]) / statistics.median(w for _, w in res[False])
    ratios = [a / b for (a, _), (b, _) in zip(res[True], res[False], strict=True)]  # repeat by repeat
    spread = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
    print(f"fit wall ratio on/off = {wall:.3f}")
    print(f"per-repeat step ratio on/off = {statistics.fmean(ratios):.3f} ± {spread:.3f} "
          f"[{min(ratios):.3f}..{max(ratios):.3f}]")
    print(f"ratio on/off = {on / off:.3f}")


if __name__ == "__main__":
    main()
