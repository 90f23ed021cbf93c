"""OOD score functions against their reference formulas (OpenOOD postprocessors, sklearn)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sklearn.covariance import EmpiricalCovariance
from torch import nn

from liandan.data.pipeline import DataInfo
from liandan.evaluation import ood_scores as S
from liandan.evaluation.runio import capture_penultimate, last_linear

INFO = DataInfo(
    source="toy", task="classify", num_classes=3, input_shape=(2, 4, 4), x_mean=[0.1, 0.2], x_std=[0.5, 2.0]
)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3)
    ).eval()


def test_pinned_defaults():
    assert (S.ODIN_T, S.ODIN_EPS, S.ENERGY_T) == (1000.0, 0.0014, 1.0)


def test_msp_and_energy_formulas():
    logits = torch.randn(50, 6) * 3
    assert torch.allclose(S.msp(logits), torch.softmax(logits.double(), 1).max(1).values)
    assert torch.allclose(S.energy(logits), torch.log(torch.exp(logits.double()).sum(1)))
    assert torch.allclose(S.energy(logits, 2.0), 2 * torch.logsumexp(logits.double() / 2, 1))


def _odin_openood(net: nn.Module, x_norm: torch.Tensor, std: list[float], T: float, eps: float) -> torch.Tensor:
    """openood/postprocessors/odin_postprocessor.py, line by line."""
    data = x_norm.clone().requires_grad_(True)
    output = net(data)
    labels = output.detach().argmax(axis=1)
    output = output / T
    loss = nn.CrossEntropyLoss()(output, labels)
    loss.backward()
    gradient = torch.ge(data.grad.detach(), 0)
    gradient = (gradient.float() - 0.5) * 2
    for c, s in enumerate(std):
        gradient[:, c] = gradient[:, c] / s
    temp = torch.add(data.detach(), gradient, alpha=-eps)
    out = net(temp) / T
    out = out - out.max(dim=1, keepdims=True).values
    out = out.exp() / out.exp().sum(dim=1, keepdims=True)
    return out.max(dim=1).values


@pytest.mark.parametrize(("T", "eps"), [(1000.0, 0.0014), (10.0, 0.05)])
def test_odin_matches_openood(T, eps):
    net, x = _net(), torch.rand(20, 2, 4, 4)
    ours = S.odin(net, INFO, x, T, eps)
    ref = _odin_openood(net, INFO.normalize_x(x), INFO.x_std, T, eps)
    assert torch.allclose(ours.float(), ref, atol=1e-6)


def test_odin_without_temperature_or_noise_is_msp():
    net, x = _net(), torch.rand(20, 2, 4, 4)
    for p in net.parameters():
        p.grad = None
    logits = net(INFO.normalize_x(x)).detach()
    assert torch.allclose(S.odin(net, INFO, x, 1.0, 0.0), S.msp(logits), atol=1e-6)
    assert all(p.grad is None for p in net.parameters())  # input gradients only


def test_mahalanobis_matches_sklearn():
    g = torch.Generator().manual_seed(0)
    k, d = 4, 6
    y = torch.arange(400) % k
    feats = torch.randn(400, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64)
    feats += 3 * torch.randn(k, d, generator=g, dtype=torch.float64)[y]
    m = S.Mahalanobis().fit(feats, y, k)
    means = torch.stack([feats[y == c].mean(0) for c in range(k)])
    cov = EmpiricalCovariance().fit((feats - means[y]).numpy())
    assert torch.allclose(m.precision, torch.from_numpy(cov.precision_), rtol=1e-6, atol=1e-8)
    test = torch.randn(30, d, generator=g, dtype=torch.float64) * 4
    ref = (
        torch.stack(
            [-torch.from_numpy(cov.mahalanobis((test - means[c]).numpy() + cov.location_)) for c in range(k)], 1
        )
        .max(1)
        .values
    )
    assert torch.allclose(m.score(test), ref, rtol=1e-6)
    assert (m.score(means) > m.score(means + 10)).all()


def test_penultimate_features_are_the_input_of_the_last_linear():
    net, x = _net(), torch.rand(5, 2, 4, 4)
    assert last_linear(net) is net[5]
    with capture_penultimate(net) as feats:
        net(x)
    assert torch.allclose(feats[0].float(), net[:5](x))
    net(x)
    assert len(feats) == 1  # the hook is removed on exit


def test_no_linear_layer_is_a_user_error():
    from liandan.errors import LiandanError

    with pytest.raises(LiandanError, match="no nn.Linear"):
        last_linear(nn.Sequential(nn.Conv2d(1, 2, 3)))


def test_energy_ranks_confident_logits_higher():
    confident = torch.tensor([[10.0, 0.0, 0.0]])
    flat = torch.tensor([[0.0, 0.0, 0.0]])
    assert S.energy(confident) > S.energy(flat) and S.msp(confident) > S.msp(flat)
    assert F.softmax(flat, 1).max() == pytest.approx(1 / 3)
