"""Every registered loss computes a finite, differentiable value; the formulas match torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from liandan.losses import weight_penalty
from liandan.registry import LOSSES


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_backward(name: str) -> None:
    entry = LOSSES.get(name)
    fn = entry.fn()
    torch.manual_seed(0)
    out = torch.randn(8, 4, requires_grad=True)
    task = entry.extra.get("tasks", ("classify",))[0]
    y = torch.randint(0, 4, (8,)) if task == "classify" else torch.randn(8, 4)
    loss = fn(out, y)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss) and out.grad.abs().sum() > 0


def test_kl_div_matches_torch_and_equals_ce_on_hard_labels() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(16, 5), torch.randn(16, 5)
    kl = LOSSES.get("kl_div").fn(temperature=2.0)
    ref = F.kl_div(F.log_softmax(s / 2, -1), F.softmax(t / 2, -1), reduction="batchmean") * 4
    assert torch.allclose(kl(s, t), ref)
    y = torch.randint(0, 5, (16,))
    assert torch.allclose(LOSSES.get("kl_div").fn()(s, y), F.cross_entropy(s, y), atol=1e-6)


def test_label_smoothing_and_class_weights() -> None:
    torch.manual_seed(0)
    out, y = torch.randn(10, 3), torch.randint(0, 3, (10,))
    ce = LOSSES.get("cross_entropy").fn(label_smoothing=0.1, class_weights=[1.0, 2.0, 0.5])
    ref = F.cross_entropy(out, y, weight=torch.tensor([1.0, 2.0, 0.5]), label_smoothing=0.1)
    assert torch.allclose(ce(out, y), ref)


def test_margin_ranking_matches_pairwise_definition() -> None:
    out = torch.tensor([[2.0, 1.5, -1.0]])
    y = torch.tensor([0])
    loss = LOSSES.get("margin_ranking").fn(margin=1.0)(out, y)
    assert torch.isclose(loss, torch.tensor((0.5 + 0.0) / 2))  # max(0, 1-(2-1.5)), max(0, 1-(2+1))


def test_weight_penalty_skips_biases() -> None:
    m = torch.nn.Linear(3, 2)
    with torch.no_grad():
        m.weight.fill_(2.0)
        m.bias.fill_(100.0)
    assert torch.isclose(weight_penalty(m, l1=0.5, l2=0.25), torch.tensor(0.5 * 12 + 0.25 * 24))
    assert weight_penalty(m, 0, 0) is None
