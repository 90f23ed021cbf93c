"""``classify`` and ``regress``: the network's output goes through the recipe's loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from liandan.registry import register_task
from liandan.training.metrics import HIGHER_IS_BETTER, MetricAccumulator, metric_names
from liandan.training.tasks import ExampleSource, Prediction, Task, class_labels, eval_outputs, top_classes

if TYPE_CHECKING:
    from liandan.training.run import Run


class Supervised(Task):
    """One output per sample scored against its target by the recipe's loss; subclasses say
    whether the output is class logits (:class:`Classify`) or values (:class:`Regress`)."""

    higher_is_better = frozenset(HIGHER_IS_BETTER)

    def metric_names(self) -> list[str]:
        return metric_names(self.is_classification, self.info.num_classes)

    def tally(self, device: torch.device, light: bool = False) -> MetricAccumulator:
        return MetricAccumulator(self.is_classification, self.info.num_classes, device, self.info.denormalize_y,
                                 light=light)


@register_task("classify")
class Classify(Supervised):
    """Classification: accuracy, top-5 accuracy (10+ classes), macro F1."""

    name = "classify"
    default_loss = "cross_entropy"
    target_kind = "class"
    is_classification = True
    headline_metric = "accuracy"
    export_output = "logits"

    def predictor(self, run: Run, top: int = 3) -> Prediction:
        """The ``top`` classes with their softmax probabilities."""
        model, names = run.model, self.info.class_names or None
        return lambda x: {"classes": top_classes(model(x[None])[0], names, top)}

    def render_examples(self, run: Run, ex: ExampleSource) -> dict[str, Any] | None:
        """Test images with the predicted class (images only: a feature vector has no picture)."""
        if not self.info.is_image:
            return None
        x_raw, y = ex.inputs()
        pred = eval_outputs(run.model, self.info, x_raw).argmax(-1)
        names = self.info.class_names or [str(i) for i in range(self.info.num_classes or 0)]
        return {"title": f"predicted classes of {ex.split} images", "images": x_raw,
                "labels": class_labels(pred, y, names)}


@register_task("regress")
class Regress(Supervised):
    """Regression: MSE, MAE and R² in the target's original units."""

    name = "regress"
    default_loss = "mse"
    target_kind = "value"
    is_regression = True
    headline_metric = "r2"
    export_output = "prediction"

    def predictor(self, run: Run, top: int = 3) -> Prediction:
        """The predicted values in the target's units."""
        model, denorm = run.model, self.info.denormalize_y
        return lambda x: {"value": [round(float(t), 6) for t in denorm(model(x[None])[0].float()).flatten()]}
