"""Loss functions, registered with ``@register_loss``.

A builder returns ``loss(output, target) -> scalar``. Classification targets are class ids
(int64, shape (B,)); regression targets are floats shaped like the output.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from liandan.registry import register_loss

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@register_loss("cross_entropy", tasks=("classify",))
def cross_entropy(label_smoothing: float = 0.0, class_weights: list[float] | None = None) -> LossFn:
    """Softmax cross-entropy on logits; optional label smoothing (Szegedy 2016) and class weights.

    Args:
        label_smoothing: mix this much of the uniform distribution into the one-hot targets (0.1 in Szegedy et
            al. 2016)
        class_weights: one weight per class, scaling its samples' loss (e.g. for rare classes); None: all 1
    """
    w = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        weight = w.to(out.device) if w is not None else None
        return F.cross_entropy(out, y, weight=weight, label_smoothing=label_smoothing)

    return loss


@register_loss("bce_with_logits", tasks=("classify", "regress"))
def bce_with_logits(pos_weight: float | None = None) -> LossFn:
    """Binary cross-entropy on logits (sigmoid inside, numerically stable); one logit per target.

    Args:
        pos_weight: weight of the positive term, e.g. negatives / positives for imbalanced labels; None: 1
    """

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.dtype == torch.int64:  # class ids 0/1 with a single output logit
            y = y.float().view_as(out) if out.shape[-1] == 1 else F.one_hot(y, out.shape[-1]).float()
        pw = torch.tensor(pos_weight, device=out.device) if pos_weight is not None else None
        return F.binary_cross_entropy_with_logits(out, y.to(out.dtype), pos_weight=pw)

    return loss


@register_loss("mse", tasks=("regress",))
def mse() -> LossFn:
    """Mean squared error (L2), the default for regression."""
    return lambda out, y: F.mse_loss(out, y.view_as(out).to(out.dtype))


@register_loss("l1", tasks=("regress",))
def l1() -> LossFn:
    """Mean absolute error (L1): robust to outliers, constant gradient."""
    return lambda out, y: F.l1_loss(out, y.view_as(out).to(out.dtype))


@register_loss("mae", tasks=("regress",))
def mae() -> LossFn:
    """Alias of l1: mean absolute error."""
    return l1()


@register_loss("smooth_l1", tasks=("regress",))
def smooth_l1(beta: float = 1.0) -> LossFn:
    """Huber-style loss: quadratic below ``beta``, linear above (Girshick 2015, Fast R-CNN).

    Args:
        beta: error (in target units) where the loss turns from quadratic to linear
    """
    return lambda out, y: F.smooth_l1_loss(out, y.view_as(out).to(out.dtype), beta=beta)


@register_loss("kl_div", tasks=("classify",))
def kl_div(temperature: float = 1.0) -> LossFn:
    """KL(target ‖ softmax(out/T))·T² — distillation (Hinton 2015) when targets are teacher logits.

    Targets may be teacher logits (float, same shape as the output) or class ids (then the
    target distribution is one-hot and this equals cross-entropy).

    Args:
        temperature: T dividing output and teacher logits; the loss is scaled by T² to keep gradients
            comparable
    """
    t = temperature

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(out / t, dim=-1)
        if y.dtype == torch.int64:
            q = F.one_hot(y, out.shape[-1]).to(out.dtype)
        else:
            q = F.softmax(y.to(out.dtype) / t, dim=-1)
        # T² keeps gradient magnitudes comparable across temperatures (Hinton et al. 2015, §2).
        return F.kl_div(logp, q, reduction="batchmean") * t * t

    return loss


@register_loss("margin_ranking", tasks=("classify",))
def margin_ranking(margin: float = 1.0) -> LossFn:
    """Multi-class margin loss: the true class's score must beat every other by ``margin`` (hinge).

    For a pair of scores it is torch's MarginRankingLoss max(0, −y·(x1 − x2) + margin), applied
    between the true-class logit and each other logit.

    Args:
        margin: how far the true class's logit must exceed each other logit before the loss is 0
    """
    ranking = nn.MarginRankingLoss(margin=margin)

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        true = out.gather(1, y[:, None]).expand_as(out)  # (B, K)
        mask = ~F.one_hot(y, out.shape[-1]).bool()
        return ranking(true[mask], out[mask], torch.ones_like(out[mask]))

    return loss


def weight_penalty(model: nn.Module, l1: float, l2: float) -> torch.Tensor | None:
    """L1/L2 regularisation on weight matrices (not biases or norm scales), added to the loss."""
    if not l1 and not l2:
        return None
    total = None
    for p in model.parameters():
        if p.requires_grad and p.dim() > 1:
            term = (l1 * p.abs().sum() if l1 else 0) + (l2 * p.pow(2).sum() if l2 else 0)
            total = term if total is None else total + term
    return total


def default_loss(task: str) -> str | None:
    """The task's own default (None: the task computes its loss itself, e.g. next-token LM)."""
    from liandan.registry import TASKS

    return TASKS.get(task).fn.default_loss
