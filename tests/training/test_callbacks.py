"""Callbacks as the trainer's extension point: the default set, typed hooks indexed per hook,
stopping through ``request_stop``/``interrupt``, callback state in checkpoints (exact resume),
recipe-named callbacks through the registry, and the doctor's auto-repair after summary.json."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import liandan
from liandan.errors import LiandanError
from liandan.training.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    ProgressBar,
    SignalHandler,
)
from liandan.training.checkpoint import list_checkpoints

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_callback.py"
BASE = {"name": "t", "seed": 0, "data": {"source": "wine", "batch_size": 16},
        "model": {"name": "mlp", "hidden": [16]}, "optim": {"name": "sgd", "lr": 0.05, "weight_decay": 0.0},
        "train": {"epochs": 3, "tensorboard": False}, "doctor": {"enabled": False}, "report": False}


def _example():
    """The example's module, loaded once per process (it registers ``loss_ema`` on import)."""
    name = "liandan_example_custom_callback"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _weights(run) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def _trainer(run_dir: Path, callbacks: list[Callback], overrides: dict | None = None):
    from liandan.recipe import load_recipe
    from liandan.training.loop import Trainer
    from liandan.training.run import prepare

    rec = load_recipe(BASE, overrides)
    data, model, _, loss_fn, device = prepare(rec)
    return Trainer(rec, data, model, loss_fn, run_dir, device, callbacks, echo=lambda *_: None, quiet=True)


@pytest.mark.slow  # trains: the fast tier keeps the listing checks
def test_example_runs(tmp_path) -> None:
    r = subprocess.run([sys.executable, str(EXAMPLE), "--out", str(tmp_path)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["python"]["steps"] == 27 and out["recipe"]["steps"] == 18
    assert out["resumed"]["steps"] == 36  # the resumed run went on counting from the checkpoint's state


def test_default_set_order_and_replacement(tmp_path) -> None:
    user = Callback()
    t = _trainer(tmp_path / "a", [user])
    kinds = [type(c) for c in t.callbacks]
    assert kinds == [CSVLogger, EarlyStopping, ProgressBar, Callback, ModelCheckpoint, SignalHandler]
    # a user's built-in replaces the default one
    mine = ModelCheckpoint(every=5, keep=1)
    t = _trainer(tmp_path / "b", [mine])
    assert [c for c in t.callbacks if isinstance(c, ModelCheckpoint)] == [mine]


def test_hooks_are_indexed_per_hook(tmp_path) -> None:
    """No per-step call for a hook nobody implements; a checkpoint callback without periodic
    saves stays off the per-step path too."""
    t = _trainer(tmp_path / "a", [])
    assert t.hooks["on_batch_start"] == [] and t.hooks["on_after_backward"] == [] and t.hooks["on_step_end"] == []

    class Steps(Callback):
        def on_step_end(self, trainer, loss, grad_norm, applied) -> None:
            pass

    t = _trainer(tmp_path / "b", [Steps()], {"train.checkpoint_every": 3})
    assert [type(fn.__self__) for fn in t.hooks["on_step_end"]] == [Steps, ModelCheckpoint]


def test_request_stop_ends_the_run_with_its_status(tmp_path) -> None:
    seen = []

    class StopAfterTwo(Callback):
        def on_epoch_end(self, trainer, metrics) -> None:
            if trainer.state.epoch == 1:
                trainer.request_stop("stopped_early", "enough")

    class Later(Callback):
        def on_epoch_end(self, trainer, metrics) -> None:
            seen.append((trainer.should_stop, trainer.status))

    run = liandan.train(BASE, {"train.epochs": 5}, out=tmp_path / "r", quiet=True,
                        callbacks=[StopAfterTwo(), Later()])
    assert run.summary["status"] == "stopped_early" and run.summary["reason"] == "enough"
    assert run.summary["epochs"] == 2
    assert seen == [(False, "running"), (True, "running")]  # pending until the epoch ends
    with pytest.raises(ValueError, match="status must be one of"):
        _trainer(tmp_path / "x", []).request_stop("running")


def test_interrupt_then_resume_is_exact_with_callback_state(tmp_path) -> None:
    """A callback interrupts at step 7 (as the agents' cancel does); the run resumes with the
    stateful example callback named in the recipe and ends bit-identical to one never stopped."""
    LossEMA = _example().LossEMA  # noqa: N806
    named = {"train.callbacks": [{"name": "loss_ema", "beta": 0.8}], "train.checkpoint_every": 4}
    full = liandan.train(BASE, named, out=tmp_path / "full", quiet=True)

    class InterruptAt7(Callback):
        def on_step_end(self, trainer, loss, grad_norm, applied) -> None:
            if trainer.state.step == 7:
                trainer.interrupt("test")

    cut = liandan.train(BASE, named, out=tmp_path / "cut", quiet=True, callbacks=[InterruptAt7()])
    assert cut.summary["status"] == "interrupted" and cut.summary["reason"] == "received test"
    assert int(list_checkpoints(tmp_path / "cut" / "checkpoints")[-1].name.split("-")[1]) == 7
    state = torch.load(list_checkpoints(tmp_path / "cut" / "checkpoints")[-1] / "state.pt", weights_only=True)
    assert state["callbacks"]["LossEMA"]["steps"] == 7
    resumed = liandan.resume(tmp_path / "cut", quiet=True)
    assert resumed.summary["status"] == "completed"
    a, b = _weights(full), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ema = [json.loads((d / "loss_ema.json").read_text()) for d in (tmp_path / "full", tmp_path / "cut")]
    assert ema[0] == ema[1]
    assert (tmp_path / "full" / "metrics.csv").read_text().count("\n") == \
        (tmp_path / "cut" / "metrics.csv").read_text().count("\n")
    assert isinstance(LossEMA(), Callback)


def test_recipe_callbacks_are_checked_by_the_registry(tmp_path) -> None:
    from liandan.recipe import load_recipe

    with pytest.raises(LiandanError, match="unknown callback 'model_chekpoint'.*did you mean 'model_checkpoint'"):
        load_recipe(BASE, {"train.callbacks": [{"name": "model_chekpoint"}]})
    with pytest.raises(LiandanError, match=r"train\.callbacks\[0\]: unknown option 'evry'"):
        load_recipe(BASE, {"train.callbacks": [{"name": "model_checkpoint", "evry": 3}]})
    rec = load_recipe(BASE, {"train.callbacks": [{"name": "model_checkpoint", "every": "5", "keep": 1}]})
    assert "callbacks" in rec.to_yaml() and "callbacks" not in load_recipe(BASE).to_yaml()
    run = liandan.train(rec, out=tmp_path / "r", quiet=True)
    assert [p.name for p in list_checkpoints(run.dir / "checkpoints")] == ["step-00000027"]  # keep 1


def test_auto_repair_runs_after_the_summary_is_written(tmp_path, monkeypatch) -> None:
    """The repair sees the finished run (summary.json with its final evaluation), and the run's
    own results are what they are without auto_fix."""
    import liandan.doctor.repair as repair

    calls = []

    def fake_repair(trainer, findings, echo=print):
        calls.append((json.loads((trainer.dir / "summary.json").read_text()), [f.code for f in findings]))
        return {}

    monkeypatch.setattr(repair, "repair_after_run", fake_repair)
    ov = {"model.init": "zeros", "doctor.enabled": True, "train.epochs": 2}
    run = liandan.train(BASE, {**ov, "doctor.auto_fix": True}, out=tmp_path / "fix", quiet=True)
    plain = liandan.train(BASE, ov, out=tmp_path / "plain", quiet=True)
    assert len(calls) == 1
    summary, codes = calls[0]
    assert summary["status"] == "completed" and "test" in summary["final"] and codes
    assert run.summary["final"] == plain.summary["final"]
