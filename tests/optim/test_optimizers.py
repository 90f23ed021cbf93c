"""Every optimizer reduces a loss; AdaBelief matches the reference package step for step."""

from __future__ import annotations

import pytest
import torch

from liandan.optim import build_optimizer, param_groups
from liandan.optim.adabelief import AdaBelief
from liandan.registry import OPTIMIZERS


def _problem():
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    y = x @ torch.randn(5, 1) + 0.1 * torch.randn(64, 1)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    return model, x, y


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizer_reduces_loss(name: str) -> None:
    model, x, y = _problem()
    opt = build_optimizer(model, name, lr=0.05 if name in ("sgd", "adagrad") else 0.01, weight_decay=0.0, options={})
    losses = []
    for _ in range(60):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], (name, losses[0], losses[-1])


def test_no_decay_on_biases_and_norms() -> None:
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    groups = param_groups(m, weight_decay=0.1)
    decay = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert decay == {id(m[0].weight), id(m[2].weight)}
    assert len(param_groups(m, 0.1, decay_bias_and_norm=True)) == 1


@pytest.mark.parametrize("weight_decay, amsgrad", [(0.0, False), (0.01, False), (0.01, True)])
def test_adabelief_matches_reference_package(weight_decay: float, amsgrad: bool) -> None:
    from adabelief_pytorch import AdaBelief as Reference

    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    b = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    b.load_state_dict(a.state_dict())
    ours = AdaBelief(a.parameters(), lr=1e-2, weight_decay=weight_decay, amsgrad=amsgrad)
    ref = Reference(b.parameters(), lr=1e-2, weight_decay=weight_decay, amsgrad=amsgrad, rectify=False,
                    print_change_log=False)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    for _ in range(50):
        for m, o in ((a, ours), (b, ref)):
            o.zero_grad()
            torch.nn.functional.cross_entropy(m(x), y).backward()
            o.step()
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.allclose(pa, pb, atol=1e-6, rtol=0), (pa - pb).abs().max()


TORCH_EQUIVALENT = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, foreach=False),
    "momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, foreach=False),
    "nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, foreach=False),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.05, foreach=False),
    "adam": lambda p: torch.optim.Adam(p, lr=0.05, foreach=False),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.01, foreach=False),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.05, foreach=False),
}


@pytest.mark.parametrize("name", sorted(TORCH_EQUIVALENT))
def test_fast_kernels_match_torchs_reference_loop(name: str) -> None:
    """Our builders pick fused/foreach kernels; the per-parameter loop is the oracle."""
    model, x, y = _problem()
    ref = _problem()[0]
    wd = 0.01 if name == "adamw" else 0.0
    ours = build_optimizer(model, name, lr=0.05, weight_decay=wd, options={}, decay_bias_and_norm=True)
    theirs = TORCH_EQUIVALENT[name](ref.parameters())
    kernel = ours.defaults.get("fused") or ours.defaults.get("foreach")
    assert kernel, f"{name}: neither fused nor foreach"
    for _ in range(30):
        for m, o in ((model, ours), (ref, theirs)):
            o.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            o.step()
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
