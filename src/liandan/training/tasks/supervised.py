"""``classify`` and ``regress``: the network's output goes through the recipe's loss."""

from __future__ import annotations

import torch

from liandan.registry import register_task
from liandan.training.metrics import HIGHER_IS_BETTER, MetricAccumulator, metric_names
from liandan.training.tasks import Task


@register_task("classify")
class Classify(Task):
    """Classification: accuracy, top-5 accuracy (10+ classes), macro F1."""

    name = "classify"
    default_loss = "cross_entropy"
    higher_is_better = frozenset(HIGHER_IS_BETTER)

    def metric_names(self) -> list[str]:
        return metric_names(self.name, self.info.num_classes)

    def tally(self, device: torch.device, light: bool = False) -> MetricAccumulator:
        return MetricAccumulator(self.name, self.info.num_classes, device, self.info.denormalize_y, light=light)


@register_task("regress")
class Regress(Classify):
    """Regression: MSE, MAE and R² in the target's original units."""

    name = "regress"
    default_loss = "mse"
