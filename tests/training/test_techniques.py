"""Training techniques: accumulation, clipping, early stopping, the non-finite guard, bf16,
exact resume and checkpoint contents."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from safetensors.torch import load_file

import liandan
from liandan.training.callbacks import Callback
from liandan.training.checkpoint import list_checkpoints

# the tests wrap optimizer.step to observe it, which torch's schedulers warn about
pytestmark = pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")

BASE = {"name": "t", "seed": 0, "data": {"source": "wine", "batch_size": 16},
        "model": {"name": "mlp", "hidden": [16]}, "optim": {"name": "sgd", "lr": 0.05, "weight_decay": 0.0},
        "train": {"epochs": 2, "tensorboard": False}, "doctor": {"enabled": False}, "report": False}


def _weights(run) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def test_accumulation_equals_the_large_batch_step(tmp_path) -> None:
    # 142 training samples: 2 full groups of 64 and a last group of 14, in the same order.
    big = liandan.train(BASE, ["data.batch_size=64", "train.epochs=3"], out=tmp_path / "big", quiet=True)
    acc = liandan.train(BASE, ["data.batch_size=16", "train.accumulate=4", "train.epochs=3"],
                        out=tmp_path / "acc", quiet=True)
    assert big.summary["steps"] == acc.summary["steps"] == 9
    for k, v in _weights(big).items():
        assert torch.allclose(v, _weights(acc)[k], atol=1e-6), k


class _Recorder(Callback):
    """Records the global gradient norm the optimizer actually applies (post-clip)."""

    def __init__(self) -> None:
        self.norms: list[float] = []
        self.pre: list[float] = []

    def on_fit_start(self, trainer) -> None:
        step = trainer.optimizer.step

        def wrapped(*a, **k):
            g = [p.grad for p in trainer.params if p.grad is not None]
            self.norms.append(float(torch.linalg.vector_norm(torch.stack([x.norm() for x in g]))))
            return step(*a, **k)

        trainer.optimizer.step = wrapped

    def on_step_end(self, trainer, loss, grad_norm, applied) -> None:
        self.pre.append(float(grad_norm))


def test_clipping_by_global_norm(tmp_path) -> None:
    rec = _Recorder()
    liandan.train(BASE, ["train.grad_clip=0.05"], out=tmp_path / "c", quiet=True, callbacks=[rec])
    assert max(rec.norms) <= 0.05 + 1e-6
    assert max(rec.pre) > 0.05  # clipping was actually needed, and the logged norm is pre-clip


def test_clipping_by_value(tmp_path) -> None:
    seen = []

    class Check(Callback):
        def on_fit_start(self, trainer) -> None:
            step = trainer.optimizer.step

            def wrapped(*a, **k):
                seen.append(max(float(p.grad.abs().max()) for p in trainer.params))
                return step(*a, **k)

            trainer.optimizer.step = wrapped

    liandan.train(BASE, ["train.grad_clip_value=0.01"], out=tmp_path / "v", quiet=True, callbacks=[Check()])
    assert max(seen) <= 0.01 + 1e-9


def test_early_stopping_stops_and_restores_best(tmp_path) -> None:
    run = liandan.train(BASE, ["train.epochs=200", "optim.lr=0.5", "model.hidden=[64]",
                               "train.early_stopping={monitor: val.loss, patience: 3}"], out=tmp_path / "e", quiet=True)
    s = run.summary
    assert s["status"] == "stopped_early" and s["epochs"] < 200
    assert s["epochs"] - 1 - s["best"]["epoch"] == 4  # patience 3 → stops on the 4th stale epoch
    best = load_file(run.dir / "checkpoints" / "best.safetensors")
    assert all(torch.equal(best[k], v) for k, v in run.model.state_dict().items())
    assert s["final"]["val"]["loss"] == pytest.approx(s["best"]["value"], rel=1e-6)


def test_unknown_monitor_lists_the_logged_metrics(tmp_path) -> None:
    with pytest.raises(liandan.LiandanError, match="val.acc.*available: .*val.accuracy"):
        liandan.train(BASE, ["train.early_stopping={monitor: val.acc}"], out=tmp_path / "m", quiet=True)


class _PoisonAt(Callback):
    """Turns the batch of one optimizer step into NaNs and snapshots weights and optimizer state."""

    def __init__(self, step: int, times: int = 1) -> None:
        self.step, self.times, self.before, self.after = step, times, None, None

    def _snap(self, trainer):
        w = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        o = {k: {n: t.clone() for n, t in s.items() if torch.is_tensor(t)}
             for k, s in trainer.optimizer.state_dict()["state"].items()}
        return w, o

    def on_batch_start(self, trainer, x, y) -> None:
        if self.step <= trainer.state.step < self.step + self.times:
            if trainer.state.step == self.step:
                self.before = self._snap(trainer)
            x.fill_(float("nan"))

    def on_step_end(self, trainer, loss, grad_norm, applied) -> None:
        if trainer.state.step == self.step + self.times:
            self.after = self._snap(trainer)


class _PoisonGradAt(_PoisonAt):
    """A NaN in one gradient only (the loss stays finite), after the backward pass."""

    def on_batch_start(self, trainer, x, y) -> None:
        if trainer.state.step == self.step:
            self.before = self._snap(trainer)

    def on_after_backward(self, trainer) -> None:
        if trainer.state.step == self.step:
            next(p for p in trainer.model.parameters() if p.grad is not None).grad[0].fill_(float("nan"))


@pytest.mark.parametrize("reads_norm", [True, False], ids=["norm", "fused-check"])
@pytest.mark.parametrize("poison", [_PoisonAt, _PoisonGradAt])
def test_nan_batch_changes_no_weight(tmp_path, poison, reads_norm: bool) -> None:
    """Both guards skip the step: the norm's (a callback reads the norm every step) and the fused
    check's (nobody reads it: the gradients and the loss are checked in one kernel)."""
    cb = poison(step=4)
    cb.reads_grad_norm = reads_norm
    run = liandan.train(BASE, ["optim.name=adam", "optim.lr=0.01"], out=tmp_path / "n", quiet=True, callbacks=[cb])
    (w0, o0), (w1, o1) = cb.before, cb.after
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert all(torch.equal(o0[k][n], o1[k][n]) for k in o0 for n in o0[k])
    assert run.status == "completed" and run.summary["bad_steps"] == 1


def test_consecutive_bad_steps_end_as_diverged(tmp_path) -> None:
    cb = _PoisonAt(step=3, times=100)
    run = liandan.train(BASE, ["train.max_bad_steps=3", "train.checkpoint_every=2"], out=tmp_path / "d",
                        quiet=True, callbacks=[cb])
    assert run.status == "diverged" and "liandan doctor" in run.summary["reason"]
    newest = list_checkpoints(run.dir / "checkpoints")[-1]
    state = torch.load(newest / "state.pt", weights_only=True)
    assert state["counters"]["step"] == 2  # the last good checkpoint is intact
    sd = load_file(newest / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in sd.values())


def test_bf16_autocast_on_cpu(tmp_path) -> None:
    run = liandan.train(BASE, ["train.precision=bf16", "train.epochs=3"], out=tmp_path / "b", quiet=True)
    assert run.status == "completed" and run.summary["final"]["test"]["accuracy"] > 0.5


def test_state_files_load_with_weights_only(tmp_path) -> None:
    run = liandan.train(BASE, ["train.checkpoint_every=3", "optim.name=adam", "schedule.name=cosine"],
                        out=tmp_path / "s", quiet=True)
    ckpts = list_checkpoints(run.dir / "checkpoints")
    assert 1 <= len(ckpts) <= 2  # keep_checkpoints=2
    st = torch.load(ckpts[-1] / "state.pt", weights_only=True)
    assert {"counters", "optimizer", "schedule", "rng"} <= set(st)
    assert {"python", "numpy", "torch"} <= set(st["rng"])


class _StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, loss, grad_norm, applied) -> None:
        if trainer.state.step == self.step:
            trainer._stop_signal = "SIGINT"


@pytest.mark.parametrize("stop_step, extra", [(13, []), (9, ["optim.name=adamw", "model.dropout=0.3",
                                                             "data.augment=[noise:0.1]", "schedule.name=onecycle"])])
def test_resume_mid_epoch_is_bit_exact(tmp_path, stop_step, extra) -> None:
    ov = ["train.epochs=3", "train.checkpoint_every=4", *extra]
    full = liandan.train(BASE, ov, out=tmp_path / "full", quiet=True)
    cut = liandan.train(BASE, ov, out=tmp_path / "cut", quiet=True, callbacks=[_StopAt(stop_step)])
    assert cut.status == "interrupted" and cut.summary["steps"] == stop_step
    done = liandan.resume(tmp_path / "cut", quiet=True)
    assert done.status == "completed"
    a, b = _weights(full), _weights(done)
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = lambda r: (r.dir / "metrics.csv").read_text().splitlines()  # noqa: E731
    strip = lambda lines: [",".join(x.split(",")[:-1]) for x in lines]  # noqa: E731 (drop wall_s)
    assert strip(rows(full)) == strip(rows(done))


def test_grad_norm_only_where_read(tmp_path) -> None:
    """Nobody reads the norm: it is computed on log steps (metrics.csv has it) and None elsewhere."""

    class Record(Callback):
        reads_grad_norm = False

        def __init__(self) -> None:
            self.seen: dict[int, float | None] = {}

        def on_step_end(self, trainer, loss, grad_norm, applied) -> None:
            self.seen[trainer.state.step] = None if grad_norm is None else float(grad_norm)

    cb = Record()
    run = liandan.train(BASE, ["train.log_every=3", "train.epochs=1"], out=tmp_path / "g", quiet=True, callbacks=[cb])
    rows = [r for r in csv.DictReader(open(run.dir / "metrics.csv")) if r["split"] == "step"]
    logged = {int(r["step"]) for r in rows}
    assert logged and all(cb.seen[s] is not None and math.isfinite(cb.seen[s]) for s in logged)
    assert all(v is None for s, v in cb.seen.items() if s not in logged)
    assert all(float(r["grad_norm"]) == pytest.approx(cb.seen[int(r["step"])]) for r in rows)
