"""examples/custom_task.py: a task added in one file (focal-loss classification) is trained from a
recipe naming it, and every pillar that asks the task serves it without knowing its name."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example():
    """The example's module, loaded once per process (it registers ``focal`` on import)."""
    name = "liandan_example_custom_task"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / "custom_task.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_adding_a_task_is_one_file() -> None:
    assert (EXAMPLES / "custom_task.py").is_file()
    from liandan.training.tasks import task_class

    focal = task_class(_example().FocalClassify.name)
    assert focal is _example().FocalClassify
    # inherited from Classify: what the pipeline, the doctor, predict and the end-of-run line ask
    assert (focal.target_kind, focal.is_classification, focal.headline_metric) == ("class", True, "accuracy")


def test_focal_loss_is_cross_entropy_at_gamma_zero() -> None:
    task = _example().FocalClassify(None, None, None)
    out, y = torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 3, 0, 1])
    ce = F.cross_entropy(out, y)
    assert task.compute_loss(out, y) < ce  # confident right answers are down-weighted
    task.gamma = 0.0
    assert torch.allclose(task.compute_loss(out, y), ce)


@pytest.mark.filterwarnings("ignore")
def test_example_trains_predicts_evaluates_and_draws(tmp_path: Path) -> None:
    res = _example().main(tmp_path, epochs=2)
    assert res["task"] == "focal" and res["test_accuracy"] > 0.5, res
    assert res["prediction"] in [str(i) for i in range(10)]

    from liandan.evaluation.metrics import evaluate_full
    from liandan.report.examples import examples
    from liandan.training.run import load_run

    run = load_run(tmp_path / "focal")
    full = evaluate_full(run.dir)  # classification metrics, the loss from the task's compute_loss
    assert abs(full["accuracy"] - res["test_accuracy"]) < 1e-3 and full["loss"] > 0
    ex = examples(run, run.load_data(), "test")  # the report's figure: predicted classes of test images
    assert ex is not None and len(ex["labels"]) == len(ex["images"]) == 8
