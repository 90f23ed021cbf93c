"""Knowledge distillation: the loss is Hinton et al.'s formula (torch as the oracle), and a tiny
student trained against the teacher beats the same student trained on the labels alone."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
import yaml

import liandan
from liandan.compress import distill, kd_loss
from liandan.compress.distill import distill_loss
from liandan.errors import LiandanError
from liandan.registry import LOSSES

from .conftest import QUIET

# an 8-unit student, short training: it underfits on labels alone, the teacher's soft targets help
STUDENT = [*QUIET, "model.hidden=[8]", "model.dropout=0", "train.epochs=6", "optim.lr=1e-2"]


def test_kd_loss_is_hintons_formula() -> None:
    torch.manual_seed(0)
    s, t, y = torch.randn(16, 5, requires_grad=True), torch.randn(16, 5), torch.randint(0, 5, (16,))
    T, a = 3.0, 0.7
    p_t = F.softmax(t / T, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / T, -1))).sum(-1).mean()
    ref = a * T * T * kl + (1 - a) * F.cross_entropy(s, y)
    got = kd_loss(s, t, y, temperature=T, alpha=a)
    torch.testing.assert_close(got, ref)
    # the soft term agrees with liandan's own kl_div loss (teacher logits as targets)
    torch.testing.assert_close(kd_loss(s, t, y, T, alpha=1.0), LOSSES.get("kl_div").fn(temperature=T)(s, t))
    # its gradient is T·(softmax(s/T) − softmax(t/T))/B (Hinton et al. 2015, eq. 2, times T²)
    (g,) = torch.autograd.grad(kd_loss(s, t, y, T, alpha=1.0), s)
    torch.testing.assert_close(g, T * (F.softmax(s / T, -1) - p_t) / 16)


def test_registered_loss_without_teacher_is_cross_entropy() -> None:
    fn = LOSSES.get("distill").fn()
    out, y = torch.randn(8, 4, requires_grad=True), torch.randint(0, 4, (8,))
    torch.testing.assert_close(fn(out, y), F.cross_entropy(out, y))
    with pytest.raises(LiandanError, match="alpha"):
        LOSSES.get("distill").fn(alpha=1.5)


def test_distilled_student_beats_the_label_only_student(teacher, tmp_path) -> None:
    doc = distill(teacher, "digits-mlp", overrides=STUDENT, out=tmp_path / "kd", temperature=4.0, alpha=0.9)
    base = liandan.train("digits-mlp", overrides=STUDENT, out=tmp_path / "labels-only", quiet=True)
    kd_acc, base_acc = doc["test"]["after"]["accuracy"], base.summary["final"]["test"]["accuracy"]
    assert kd_acc >= 0.85 and kd_acc >= base_acc + 0.05, (kd_acc, base_acc)
    assert doc["test"]["before"]["accuracy"] > 0.95  # the teacher
    assert doc["params"]["after"] == 64 * 8 + 8 + 8 * 10 + 10 and doc["size_bytes"]["ratio"] > 10
    assert doc["roles"] == {"before": "teacher", "after": "student"} and 0.8 < doc["top1_agreement"] <= 1
    run_dir = tmp_path / "kd"
    assert json.loads((run_dir / "compress.json").read_text())["method"] == "distill"
    loss = yaml.safe_load((run_dir / "recipe.yaml").read_text())["loss"]
    assert loss["name"] == "distill" and loss["teacher"] == str(teacher.resolve()) and loss["temperature"] == 4.0
    # the student is an ordinary run: the run's own evaluation reads it (hard-label loss)
    assert liandan.evaluate(run_dir)["accuracy"] == pytest.approx(kd_acc)


def test_training_without_inputs_never_drops_the_teacher_silently(teacher, tmp_path) -> None:
    """The classify task hands the inputs over, so a plain recipe trains against the teacher; a
    caller that trains without inputs is refused instead of getting plain cross-entropy."""
    recipe = {"data": {"source": "digits"}, "model": {"name": "mlp", "hidden": [8]},
              "loss": {"name": "distill", "teacher": str(teacher)}}
    run = liandan.train(recipe, overrides=[*QUIET, "train.epochs=1"], out=tmp_path / "r", quiet=True)
    assert run.status == "completed"
    loss = distill_loss(teacher=str(teacher))
    out = torch.zeros(4, 10, requires_grad=True)
    with pytest.raises(LiandanError, match="needs each batch's inputs"):
        loss(out, torch.zeros(4, dtype=torch.int64))


def test_teacher_must_be_a_classifier(tmp_path) -> None:
    reg = liandan.train("diabetes-regression", overrides=[*QUIET, "train.epochs=1"], out=tmp_path / "reg",
                        quiet=True)
    with pytest.raises(LiandanError, match="teacher must be a classifier"):
        distill(reg.dir, "digits-mlp", overrides=STUDENT, out=tmp_path / "s")
