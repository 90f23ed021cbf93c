"""``liandan.diagnose`` / ``liandan doctor``: diagnose a finished run, or a recipe before a long job.
(The module is not called ``diagnose``: ``liandan.doctor.diagnose`` is the public function.)

- A run directory is re-diagnosed post hoc from its logs (``doctor_probes.jsonl`` if the doctor
  was on, else ``metrics.csv``; plus ``summary.json``); doctor.json is (re)written, keeping
  findings other tools added (``ood_inputs``).
- A recipe (file or preset) gets a short probing run — about half an epoch, at least 20 steps —
  and one small-batch overfit check (TheDeepChecker's pre-training test: a correct program can
  drive the loss on 16 samples to ~0), then the rules in ``probe`` mode.
- ``fix=True`` runs the repair loop (:mod:`liandan.doctor.repair`) instead.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import torch

from liandan.doctor.engine import run_rules
from liandan.doctor.findings import DOCTOR_JSON, Finding, document, write_doctor_json
from liandan.recipe import Recipe, load_recipe
from liandan.training.callbacks import Callback

PROBE_MIN_STEPS, PROBE_MAX_STEPS = 20, 200
CHECK_SAMPLES, CHECK_STEPS = 16, 500


def is_run_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "recipe.yaml").is_file() and (p / "data.json").is_file()


def diagnose(target: str | Path | dict | Recipe, *, fix: bool = False, overrides: list[str] | dict | None = None,
             out: str | Path | None = None, rounds: int | None = None, memory: str | Path | None = None,
             quiet: bool = True, echo: Any = None) -> dict[str, Any]:
    """Diagnose a run directory or a recipe; with ``fix`` repair it. Returns the doctor document
    (``{"healthy", "findings", ...}``) or, with ``fix``, the repair report."""
    if isinstance(target, (str, Path)) and is_run_dir(target):
        if fix:
            from liandan.doctor.repair import repair

            doc = diagnose_run_dir(target)
            findings = [Finding.from_dict(f) for f in doc["findings"] if not f.get("external")]
            return repair(Path(target) / "recipe.yaml", overrides, rounds=rounds, out=out or Path(target) / "repair",
                          memory=memory, baseline=(Path(target), findings, None), echo=echo, quiet=quiet)
        return diagnose_run_dir(target)
    if fix:
        from liandan.doctor.repair import repair

        return repair(target, overrides, rounds=rounds, out=out, memory=memory, echo=echo, quiet=quiet)
    return diagnose_recipe(target, overrides, out=out, quiet=quiet)


def diagnose_run_dir(run_dir: str | Path, write: bool = True) -> dict[str, Any]:
    from liandan.doctor.view import view_from_run_dir
    from liandan.training.rundir import read_json

    run_dir = Path(run_dir)
    view = view_from_run_dir(run_dir)
    findings: list[Any] = [f.to_dict() for f in run_rules(view)]
    old = run_dir / DOCTOR_JSON
    if old.exists():
        try:
            findings += [f for f in read_json(old).get("findings", []) if f.get("external")]
        except ValueError:
            pass
    extra = {"status": view.status, "steps": view.steps[-1] if view.steps else 0}
    if write:
        write_doctor_json(run_dir, findings, **extra)
    return {**document(findings, **extra), "run": str(run_dir)}


def probe_plan(recipe: Recipe) -> tuple[int, int]:
    """(epochs, max_steps) of the probing run: half an epoch, at least 20 and at most 200 steps."""
    from liandan.data.pipeline import build_data

    data = build_data(recipe.data, recipe.seed, recipe.task)
    spe = max(1, -(-len(data.train) // recipe.train.accumulate))
    steps = int(min(max(spe // 2, PROBE_MIN_STEPS), PROBE_MAX_STEPS))
    return max(1, -(-steps // spe)), steps


def diagnose_recipe(recipe: str | Path | dict | Recipe, overrides: list[str] | dict | None = None, *,
                    out: str | Path | None = None, quiet: bool = True) -> dict[str, Any]:
    """Short probing run + small-batch overfit check, then the rules (``probe`` mode)."""
    from liandan.doctor.live import DoctorCallback
    from liandan.training.api import train

    rc = load_recipe(recipe, overrides)
    epochs, steps = probe_plan(rc)
    rc = load_recipe(rc, {"train.epochs": epochs, "train.max_steps": steps, "train.early_stopping": None,
                          "train.tensorboard": False, "doctor.enabled": False, "doctor.auto_fix": False,
                          "report": False})
    check = overfit_check(rc)
    cb = DoctorCallback(rc, mode="probe")
    cb.overfit_check = check
    root = Path(out) if out else Path(tempfile.mkdtemp(prefix="liandan-doctor-"))
    train(rc, out=root, callbacks=[cb], quiet=quiet)
    doc = document(cb.findings, mode="probe", steps=steps, overfit_check=check, run=str(root))
    write_doctor_json(root, cb.findings, mode="probe", steps=steps, overfit_check=check)
    return doc


def overfit_check(recipe: Recipe, samples: int = CHECK_SAMPLES, steps: int = CHECK_STEPS) -> dict[str, Any]:
    """Can the model drive the loss on one small batch to ~0? (TheDeepChecker's pre-training
    check: passes when the loss falls below 10 % of its start, or every sample is predicted
    right.) A short training through the trainer on that batch, so every task takes it with its
    own loss; the recipe's model, loss and optimizer without weight decay or schedule."""
    from liandan.training.run import prepare
    from liandan.training.short_runs import one_batch_data, short_fit

    data, model, _, loss_fn, device = prepare(recipe)
    small, xb, yb = one_batch_data(data, samples, steps)
    rc = load_recipe(recipe, {"optim.weight_decay": 0.0, "schedule.name": "constant", "schedule.warmup_steps": 0,
                              "train.accumulate": 1, "train.epochs": 1, "train.max_steps": steps})
    watch = _OverfitWatch(xb.to(device), yb.to(device))
    trainer = short_fit(rc, small, model, loss_fn, device, [watch])
    first, last, acc = watch.first, watch.last, watch.accuracy
    passed = math.isfinite(last) and (last < 0.1 * first or acc == 1.0)
    res = {"samples": len(yb), "steps": trainer.state.step, "loss_start": first, "loss_end": last,
           "passed": bool(passed)}
    if acc is not None:
        res["accuracy"] = acc
    return res


class _OverfitWatch(Callback):
    """Loss of each step on the one batch; stops once it is fitted (or non-finite)."""

    def __init__(self, x: Any, y: Any) -> None:
        self.x, self.y = x, y
        self.first = self.last = math.nan
        self.accuracy: float | None = None

    def on_step_end(self, trainer: Any, loss: Any, grad_norm: Any, applied: bool) -> None:
        self.last = float(loss)
        if trainer.state.step == 1:
            self.first = self.last
        if not applied or not math.isfinite(self.last):
            self.last = math.nan
            trainer.status = "completed"
            return
        if "accuracy" in trainer.task.metric_names():  # every sample right, after this step
            with torch.no_grad():
                was = trainer.model.training
                trainer.model.eval()
                loss_now, out = trainer.task.forward(trainer.model, self.x, self.y)
                tally = trainer.task.tally(self.x.device)
                tally.update(out, self.y, loss_now)
                trainer.model.train(was)
            self.accuracy = tally.compute().get("accuracy")
            if self.accuracy == 1.0 and self.last < 0.1 * self.first:
                trainer.status = "completed"
