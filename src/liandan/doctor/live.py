"""The live doctor: probes plus rules during ``liandan train``.

Findings are printed (``trainer.echo``) as they arise — a non-finite loss at the step it
happens, exploding gradients at the next probe step, the rest at epoch ends — and the final
diagnosis of the whole run is written to ``doctor.json`` when the run ends, whatever its status
(completed, stopped early, diverged, interrupted). With ``doctor.auto_fix: true`` the repair
loop (:mod:`liandan.doctor.repair`) then retrains with the top fix — after the run is over and
its ``summary.json`` written (the ``on_run_end`` hook), so the repair's trainings cannot touch
the run's own final evaluation, weights or summary.

The doctor never takes a run down: an internal error disables it with one line on the log
(set ``LIANDAN_DOCTOR_STRICT=1`` to raise instead, as the tests do).
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

from liandan.doctor.engine import run_rules
from liandan.doctor.findings import Finding, format_finding, write_doctor_json
from liandan.doctor.probes import Probes
from liandan.doctor.view import RunView
from liandan.recipe import Recipe
from liandan.registry import register_callback
from liandan.training.callbacks import Callback

if TYPE_CHECKING:
    from liandan.training.loop import Trainer


def _guard(fn):
    @functools.wraps(fn)
    def wrapper(self: DoctorCallback, trainer: Trainer, *args: Any) -> None:
        if self.disabled:
            return
        try:
            fn(self, trainer, *args)
        except Exception as e:
            if os.environ.get("LIANDAN_DOCTOR_STRICT"):
                raise
            self.disabled = True
            self._remove_hooks()
            trainer.echo(f"doctor: internal error ({type(e).__name__}: {e}); the doctor is off for this run")
    return wrapper


class DoctorCallback(Probes):
    """Probes + rules; ``findings`` holds the final diagnosis after the run."""

    def __init__(self, recipe: Recipe, mode: str = "train") -> None:
        dc = recipe.doctor
        super().__init__(budget=dc.probe_budget, every=dc.probe_every)
        self.mode = mode
        self.disabled = False
        self.reported: dict[str, Finding] = {}
        self.findings: list[Finding] = []
        self.overfit_check: dict[str, Any] | None = None
        self.repair_due = False  # set at fit end, done by on_run_end once summary.json is written

    def view(self, trainer: Trainer, phase: str) -> RunView:
        info = trainer.info
        # sink: a record a rule adds (the LR range test's result) joins the probe log, so a post hoc
        # diagnosis judges on the same numbers
        return RunView(trainer.recipe, info.task, info.num_classes, tuple(info.input_shape), list(self.records),
                       class_names=info.class_names, status=trainer.status, phase=phase, mode=self.mode,
                       overfit_check=self.overfit_check, sizes=dict(info.sizes),
                       extra={"sink": self.add, "info": info, "model": trainer.model})  # the fine-tune rules read both

    def check(self, trainer: Trainer, phase: str) -> list[Finding]:
        found = run_rules(self.view(trainer, phase))
        for f in found:
            if f.code not in self.reported:
                self.reported[f.code] = f
                trainer.echo(format_finding(f))
        return found

    on_fit_start = _guard(Probes.on_fit_start)
    on_batch_start = _guard(Probes.on_batch_start)
    on_after_backward = _guard(Probes.on_after_backward)

    @_guard
    def on_step_end(self, trainer: Trainer, loss: Any, grad_norm: Any, applied: bool) -> None:
        Probes.on_step_end(self, trainer, loss, grad_norm, applied)
        if not applied and "nonfinite_loss" not in self.reported:  # report at the step it happens
            self.flush(trainer)
            self.check(trainer, "step")

    def on_probe(self, trainer: Trainer, probe: dict[str, Any]) -> None:
        self.flush(trainer)
        self.check(trainer, "step")

    @_guard
    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, dict[str, float]]) -> None:
        Probes.on_epoch_end(self, trainer, metrics)
        self.check(trainer, "epoch")

    @_guard
    def on_fit_end(self, trainer: Trainer) -> None:
        Probes.on_fit_end(self, trainer)
        self.findings = self.check(trainer, "end")
        self.save()  # records the final check added
        if self.mode == "train":
            write_doctor_json(trainer.dir, self.findings, status=trainer.status, steps=trainer.state.step)
            self.repair_due = bool(trainer.recipe.doctor.auto_fix and self.findings)

    @_guard
    def on_run_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        """``doctor.auto_fix``: repair rounds in RUN/repair/, judged against the run's delivered
        model (the best weights where the recipe restores them, as every repair round's is)."""
        if self.repair_due:
            from liandan.doctor.repair import repair_after_run

            self.repair_due = False
            repair_after_run(trainer, self.findings, echo=trainer.echo)


@register_callback("doctor")
def doctor(recipe: Recipe) -> Callback:
    """The live doctor: probes and rules while training, doctor.json at the end (the recipe's
    ``doctor`` section configures it; ``liandan.train`` adds it when ``doctor.enabled``)."""
    return DoctorCallback(recipe)


def doctor_callbacks(recipe: Recipe) -> list[Callback]:
    """``[doctor(recipe)]``; the trainer builds it through the registry instead
    (``liandan.training.callbacks.defaults.build_callback("doctor", {}, recipe)``)."""
    return [doctor(recipe)]
