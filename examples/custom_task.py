"""A new task in one file: classification with the focal loss, named by a recipe's ``task:``.

The focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection", eq. 4) scales each
sample's cross entropy by ``(1 - p_t)^γ``, where ``p_t`` is the probability of its true class:
samples the model already gets right with confidence count little, so training dwells on the
hard ones. ``γ = 0`` is plain cross entropy.

A task says what a batch means. Subclassing :class:`~liandan.training.tasks.supervised.Classify`
keeps everything else a classifier has: its metrics (accuracy, macro F1), the end-of-run line
(``headline_metric``), what ``liandan predict`` prints (``predictor``), the report's examples,
the ONNX export, and how the data pipeline treats the labels (``target_kind = "class"``: splits
stratified, one output per class). Nothing else in liandan changes, because no code outside the
task registry compares task names: it asks the task.

    python examples/custom_task.py [--out DIR] [--epochs N]

Prints one JSON line: the run's task, its test accuracy and the prediction for one test image.
In another process the task must be registered before a recipe names it: import this module,
or (a plugin) declare it in your package's ``liandan.tasks`` entry-point group.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import liandan
from liandan.registry import register_task
from liandan.training.tasks.supervised import Classify


@register_task("focal")  # recipes name it: task: focal
class FocalClassify(Classify):
    """Classification with the focal loss (Lin et al. 2017): cross entropy scaled by (1 - p_t)^γ."""

    name = "focal"
    default_loss = None  # the task computes its loss itself: no recipe loss is needed
    gamma = 2.0  # the paper's best value for dense detection; 0 gives plain cross entropy

    def compute_loss(self, out: torch.Tensor, y: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        logp = F.log_softmax(out.float(), -1).gather(1, y[:, None]).squeeze(1)  # (B,) log p_t
        return (-((1 - logp.exp()) ** self.gamma) * logp).mean()


RECIPE = {
    "name": "digits-focal",
    "seed": 0,
    "task": "focal",
    "data": {"source": "digits", "batch_size": 64},
    "model": {"name": "mlp", "hidden": [64]},
    "optim": {"name": "adamw", "lr": 3e-3},
    "train": {"epochs": 5, "tensorboard": False},
    "doctor": {"enabled": False},
    "report": False,
}


def main(out: Path, epochs: int = 5) -> dict[str, Any]:
    run = liandan.train(RECIPE, {"train.epochs": epochs}, out=out / "focal", quiet=True)
    data = run.load_data()
    x = data.source.x[data.indices["test"][:1]]  # one raw test image (8×8 pixels)
    pred = liandan.predict(run.dir, [x[0].numpy()], top=1)[0]["classes"][0]
    return {"task": run.info.task, "test_accuracy": round(run.summary["final"]["test"]["accuracy"], 4),
            "prediction": pred["label"], "truth": str(int(data.source.y[data.indices["test"][0]]))}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="where the run goes (default: a temporary folder)")
    ap.add_argument("--epochs", type=int, default=5, help="training epochs")
    args = ap.parse_args()
    if args.out is not None:
        print(json.dumps(main(args.out, args.epochs)))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(main(Path(tmp), args.epochs)))
