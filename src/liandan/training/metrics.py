"""Metrics accumulated over batches without a host sync per batch.

Classification: accuracy, top-5 accuracy (10+ classes), macro F1 (from a confusion matrix).
Regression (in the target's original units): MSE, MAE, R².
"""

from __future__ import annotations

import torch


def metric_names(classes: bool, num_classes: int) -> list[str]:
    """The metrics of a classifier (``classes``) or a regressor besides the loss."""
    if classes:
        return ["accuracy"] + (["top5_accuracy"] if num_classes >= 10 else []) + ["f1_macro"]
    return ["mse", "mae", "r2"]


HIGHER_IS_BETTER = {"accuracy", "top5_accuracy", "f1_macro", "r2"}


# The light tally counts correct predictions of several steps in one go: argmax, compare and
# sum are three small ops, whose fixed cost (~10 µs on a CPU) is a few percent of a small model's
# step. Outputs wait (detached) until this many elements are pending, at most PENDING_STEPS steps.
PENDING_ELEMENTS = 1 << 18
PENDING_STEPS = 16


class MetricAccumulator:
    """Sums over batches; ``light`` keeps only loss and accuracy (the per-step training tally,
    where a confusion matrix and top-5 on every batch would cost more than the step itself on a
    small model; its correct count is folded in every few steps, see ``PENDING_STEPS``).
    ``classes``: the outputs are class logits against integer labels, else values against float
    targets (``denormalize`` maps both back to the data's units)."""

    def __init__(self, classes: bool, num_classes: int, device: torch.device, denormalize=None,
                 light: bool = False) -> None:
        self.classes, self.k, self.device, self.denorm = classes, num_classes, device, denormalize
        self.light = light and classes
        self.reset()

    def reset(self) -> None:
        z = lambda: torch.zeros((), dtype=torch.float64, device=self.device)  # noqa: E731
        self.loss_sum, self.n = z(), 0
        if self.light:
            self.correct = torch.zeros((), dtype=torch.int64, device=self.device)
            self._outs: list[torch.Tensor] = []
            self._ys: list[torch.Tensor] = []
            self._pending = 0
        elif self.classes:
            self.confusion = torch.zeros(self.k, self.k, dtype=torch.int64, device=self.device)
            self.top5 = z()
        else:
            self.sse, self.sae, self.y_sum, self.y_sq = z(), z(), z(), z()

    def update(self, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        """Add a batch; ``out`` and ``loss`` must be detached (no graph is recorded then, so no
        ``no_grad`` context is needed: this runs every training step, where each op counts)."""
        b = len(y)
        self.loss_sum.add_(loss, alpha=b)
        self.n += b
        if self.light:
            self._outs.append(out)
            self._ys.append(y)
            self._pending += out.numel()
            if self._pending >= PENDING_ELEMENTS or len(self._outs) >= PENDING_STEPS:
                self.flush()
        elif self.classes:
            pred = out.argmax(-1)
            self.confusion += torch.bincount(y * self.k + pred, minlength=self.k * self.k).view(self.k, self.k)
            if self.k >= 10:
                self.top5 += (out.topk(5, -1).indices == y[:, None]).any(-1).sum()
        else:
            p, t = out.float(), y.float().view_as(out)
            if self.denorm is not None:
                p, t = self.denorm(p), self.denorm(t)
            self.sse += ((p - t) ** 2).sum()
            self.sae += (p - t).abs().sum()
            self.y_sum += t.sum()
            self.y_sq += (t**2).sum()
            self._dims = t.numel() // max(b, 1)

    def flush(self) -> None:
        """Count the pending outputs' correct predictions (before reading or saving the sums)."""
        if not self.light or not self._outs:
            return
        outs, ys = self._outs, self._ys
        out, y = (outs[0], ys[0]) if len(outs) == 1 else (torch.cat(outs), torch.cat(ys))
        self.correct.add_((out.argmax(-1) == y).sum())
        self._outs, self._ys, self._pending = [], [], 0

    def compute(self) -> dict[str, float]:
        self.flush()
        n = max(self.n, 1)
        res = {"loss": float(self.loss_sum) / n}
        if self.light:
            res["accuracy"] = float(self.correct) / n
        elif self.classes:
            cm = self.confusion.double()
            tp = cm.diag()
            res["accuracy"] = float(tp.sum() / max(cm.sum(), 1))
            if self.k >= 10:
                res["top5_accuracy"] = float(self.top5) / n
            prec = tp / cm.sum(0).clamp_min(1)
            rec = tp / cm.sum(1).clamp_min(1)
            f1 = torch.where(prec + rec > 0, 2 * prec * rec / (prec + rec).clamp_min(1e-12), torch.zeros_like(tp))
            present = (cm.sum(1) + cm.sum(0)) > 0  # macro over classes that occur
            res["f1_macro"] = float(f1[present].mean()) if present.any() else 0.0
        else:
            m = n * getattr(self, "_dims", 1)
            res["mse"] = float(self.sse) / m
            res["mae"] = float(self.sae) / m
            var = float(self.y_sq) / m - (float(self.y_sum) / m) ** 2
            res["r2"] = 1.0 - res["mse"] / var if var > 0 else 0.0
        return res
