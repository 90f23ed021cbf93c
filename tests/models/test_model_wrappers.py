"""Weight and spectral normalisation wrappers, checked numerically against their definitions."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from liandan.errors import LiandanError
from liandan.models._wrappers import apply_weight_norm, remove_weight_norm


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 5))


def test_weight_norm_starts_as_identity_and_follows_g_v_over_norm() -> None:
    plain = _net()
    wn = apply_weight_norm(copy.deepcopy(plain), "weight")
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(wn(x), plain(x))  # g is initialised to ‖v‖: same function at first
    lin = wn[3]
    g, v = lin.parametrizations.weight.original0, lin.parametrizations.weight.original1
    with torch.no_grad():
        g.mul_(torch.linspace(0.5, 2.0, 5).view(5, 1))
    # Salimans & Kingma 2016: w = g · v / ‖v‖, one g per output row
    expected = g * v / torch.linalg.vector_norm(v, dim=1, keepdim=True)
    torch.testing.assert_close(lin.weight, expected)
    conv = wn[0]
    cg, cv = conv.parametrizations.weight.original0, conv.parametrizations.weight.original1
    norms = torch.linalg.vector_norm(cv.flatten(1), dim=1).view(-1, 1, 1, 1)
    torch.testing.assert_close(conv.weight, cg * cv / norms)
    # one extra parameter (g) per output unit
    assert sum(p.numel() for p in wn.parameters()) == sum(p.numel() for p in plain.parameters()) + 8 + 5


def test_spectral_norm_divides_by_the_largest_singular_value() -> None:
    wn = apply_weight_norm(_net(), "spectral", exclude=("0",), n_power_iterations=10)
    assert not hasattr(wn[0], "parametrizations")  # excluded
    lin = wn[3]
    w_orig = lin.parametrizations.weight.original.detach().clone()
    wn.train()
    for _ in range(20):  # n_power_iterations per training forward
        wn(torch.randn(2, 3, 8, 8))
    wn.eval()
    sigma = torch.linalg.matrix_norm(w_orig, ord=2)
    torch.testing.assert_close(lin.weight, w_orig / sigma, rtol=1e-4, atol=1e-6)
    assert torch.linalg.matrix_norm(lin.weight, ord=2).item() == pytest.approx(1.0, abs=1e-4)


def test_idempotent_remove_and_errors() -> None:
    m = apply_weight_norm(apply_weight_norm(_net(), "weight"), "weight")
    assert len(m[3].parametrizations.weight) == 1
    x = torch.randn(2, 3, 8, 8)
    before = m(x)
    remove_weight_norm(m)
    assert not hasattr(m[3], "parametrizations")
    torch.testing.assert_close(m(x), before)
    assert apply_weight_norm(_net(), "none") is not None
    with pytest.raises(LiandanError, match="unknown weight normalisation"):
        apply_weight_norm(_net(), "batch")  # type: ignore[arg-type]


def test_wraps_zoo_models() -> None:
    from liandan.registry import MODELS

    m = apply_weight_norm(MODELS.get("resnet18").fn(num_classes=10, input_shape=(3, 32, 32)), "spectral")
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    copy.deepcopy(m)  # parametrizations deep-copy (the old hook-based API did not)
