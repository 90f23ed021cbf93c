"""Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network").

A small *student* learns from a trained *teacher* run as well as from the labels::

    L = α · T² · KL( softmax(t/T) ‖ softmax(s/T) )  +  (1 − α) · CE(s, y)

``s``, ``t``: student and teacher logits; ``T``: the temperature that softens both
distributions so the teacher's "dark knowledge" (which wrong classes it finds plausible) carries
signal; ``T²`` keeps the soft term's gradients on the scale of the hard term's as T changes (§2).

In a recipe it is a loss whose options name the teacher run, so ``liandan train student.yaml``
keeps the run directory, the doctor and the report::

    loss: {name: distill, teacher: runs/digits-mlp, temperature: 4.0, alpha: 0.9}

The loss needs each batch's *inputs* to ask the teacher: the task calls it as
``loss(out, y, x=x, info=info)`` (``needs_input = True``). Called as ``loss(out, y)`` (the
trainer's dry run, an evaluation from saved logits) it is the hard-label cross-entropy; in a
training step without inputs it refuses rather than silently dropping the teacher.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from liandan.errors import LiandanError
from liandan.registry import register_loss

if TYPE_CHECKING:
    from liandan.data.pipeline import DataInfo


def kd_loss(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, temperature: float = 4.0, alpha: float = 0.9,
            label_smoothing: float = 0.0) -> torch.Tensor:
    """α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, y), batch mean (Hinton et al. 2015)."""
    T = temperature
    soft = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t.to(s.dtype) / T, -1), reduction="batchmean",
                    log_target=True) * (T * T)
    hard = F.cross_entropy(s, y, label_smoothing=label_smoothing)
    return alpha * soft + (1.0 - alpha) * hard


class DistillLoss:
    """The ``distill`` loss: asks the (frozen, lazily loaded) teacher run for logits on the same inputs."""

    needs_input = True

    def __init__(self, teacher: str | None, temperature: float, alpha: float, label_smoothing: float) -> None:
        if temperature <= 0:
            raise LiandanError(f"loss.temperature must be > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise LiandanError(f"loss.alpha must be in [0, 1], got {alpha}")
        self.teacher_dir = teacher
        self.temperature, self.alpha, self.label_smoothing = temperature, alpha, label_smoothing
        self._teacher: tuple[nn.Module, DataInfo] | None = None

    def teacher(self) -> tuple[nn.Module, DataInfo]:
        """The teacher's model (eval mode, no gradients) and its data facts."""
        if self._teacher is None:
            model, info = load_teacher(self.teacher_dir)
            self._teacher = (model, info)
        return self._teacher

    @torch.no_grad()
    def teacher_logits(self, x: torch.Tensor, info: DataInfo | None = None) -> torch.Tensor:
        """Teacher logits for the student's (normalised) inputs ``x``, re-normalised for the teacher."""
        model, tinfo = self.teacher()
        if info is not None and (info.x_mean != tinfo.x_mean or info.x_std != tinfo.x_std):
            x = tinfo.normalize_x(_denormalize_x(info, x.float().cpu())).to(x.device)
        if next(model.parameters()).device != x.device:
            model.to(x.device)
        return model(x).float()

    def __call__(self, out: torch.Tensor, y: torch.Tensor, x: torch.Tensor | None = None,
                 info: DataInfo | None = None) -> torch.Tensor:
        if self.teacher_dir is None or x is None:
            if self.teacher_dir is not None and out.requires_grad:
                raise LiandanError("loss 'distill' needs each batch's inputs to ask its teacher: use it with a "
                                   "task that passes x to needs_input losses (classify)")
            return F.cross_entropy(out, y, label_smoothing=self.label_smoothing)
        t = self.teacher_logits(x, info)
        if t.shape != out.shape:
            raise LiandanError(f"teacher logits {tuple(t.shape)} do not match the student's {tuple(out.shape)}: "
                               "the teacher must be a classifier of the same classes")
        return kd_loss(out, t, y, self.temperature, self.alpha, self.label_smoothing)


@register_loss("distill", tasks=("classify",))
def distill_loss(teacher: str | None = None, temperature: float = 4.0, alpha: float = 0.9,
                 label_smoothing: float = 0.0) -> DistillLoss:
    """Knowledge distillation from a teacher run (Hinton 2015): α·T²·KL(teacher‖student) + (1−α)·CE.

    ``teacher``: the run directory of a trained classifier on the same classes (no teacher:
    plain cross-entropy); ``temperature`` T softens both distributions; ``alpha`` weighs the
    soft term against the labels.

    Args:
        teacher: run directory of a trained classifier of the same classes; None: plain cross-entropy
        temperature: T softening both distributions (Hinton et al. 2015); the soft term is scaled by T²
        alpha: weight of the soft (teacher) term; 1 − alpha goes to the labels' cross-entropy
        label_smoothing: label smoothing of the hard cross-entropy term
    """
    return DistillLoss(teacher, temperature, alpha, label_smoothing)


def _denormalize_x(info: DataInfo, x: torch.Tensor) -> torch.Tensor:
    if info.x_mean is None:
        return x
    shape = (-1, 1, 1) if info.is_image else (-1,)
    return x * torch.tensor(info.x_std).view(shape) + torch.tensor(info.x_mean).view(shape)


def load_teacher(run_dir: str | Path | None) -> tuple[nn.Module, DataInfo]:
    """A trained classifier run as a frozen teacher (eval mode, ``requires_grad`` off)."""
    from liandan.training.run import load_run
    from liandan.training.tasks import task_class

    if run_dir is None:
        raise LiandanError("distillation needs a teacher run directory")
    from liandan.paths import check_path

    path = check_path(run_dir, "teacher run")  # under the agents' roots: the teacher must lie inside
    if not path.is_dir():
        raise LiandanError(f"teacher run not found: {path}")
    run = load_run(path)
    if not task_class(run.info.task).is_classification:
        raise LiandanError(f"the teacher must be a classifier: {path} is a {run.info.task!r} run")
    model = run.model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, run.info


# --- the public function ------------------------------------------------------------------------


def distill(teacher_run: str | Path, student: str | Path | dict = "digits-mlp",
            overrides: list[str] | dict | None = None, out: str | Path | None = None, temperature: float = 4.0,
            alpha: float = 0.9, latency: bool = True, quiet: bool = True) -> dict[str, Any]:
    """Train ``student`` (a preset, recipe file or dict) against the teacher run; returns ``compress.json``.

    The student trains on the teacher's data section and seed (the same splits: the teacher never
    saw the student's test split) with ``loss: {name: distill, teacher, temperature, alpha}``;
    ``overrides`` apply last (``["model.hidden=[16]", "train.epochs=10"]``). ``out`` is the
    student's run directory, with ``compress.json`` added: sizes, parameters, test metrics and
    latency of teacher and student, and their top-1 agreement on the test split.
    """
    from liandan.compress.measure import compare
    from liandan.compress.store import COMPRESS_JSON, disk_sizes
    from liandan.evaluation.runio import logits_of, open_run, raw_split
    from liandan.recipe import load_dict, load_recipe
    from liandan.runs import RunDir
    from liandan.training.api import train
    from liandan.training.rundir import write_json
    from liandan.training.tasks import task_class

    teacher_dir = Path(teacher_run)
    teacher, data = open_run(teacher_dir)
    if not task_class(teacher.info.task).is_classification:
        raise LiandanError(f"the teacher must be a classifier: {teacher_dir} is a {teacher.info.task!r} run")
    raw = load_dict(student)
    raw["data"], raw["seed"], raw["task"] = teacher.recipe.to_dict()["data"], teacher.recipe.seed, teacher.recipe.task
    raw["name"] = f"{raw.get('name') or 'student'}-distilled"
    smoothing = (raw.get("loss") or {}).get("label_smoothing", 0.0)
    raw["loss"] = {"name": "distill", "teacher": str(teacher_dir.resolve()), "temperature": temperature,
                   "alpha": alpha, "label_smoothing": smoothing}
    recipe = load_recipe(raw, overrides)
    run = train(recipe, out=out, quiet=quiet)
    if run.status not in ("completed", "stopped_early"):
        raise LiandanError(f"the student run ended {run.status}: see {run.dir}")
    student_model = run.model.eval()
    measured = compare(teacher, data, teacher.model, student_model, latency=latency)
    x, _ = raw_split(data, "test")
    agree = (logits_of(student_model, run.info, x).argmax(1) == logits_of(teacher.model, teacher.info, x).argmax(1))
    doc = {"method": "distill", "source": str(teacher_dir), "out": str(run.dir),
           "options": {"student": str(student) if not isinstance(student, dict) else "dict",
                       "temperature": temperature, "alpha": alpha,
                       "overrides": overrides if isinstance(overrides, dict) else list(overrides or [])},
           "structure": {}, **measured, "roles": {"before": "teacher", "after": "student"},
           "top1_agreement": float(agree.float().mean())}
    doc["size_bytes"] = disk_sizes(teacher_dir, RunDir(run.dir).weights())
    write_json(run.dir / COMPRESS_JSON, doc)
    return doc

