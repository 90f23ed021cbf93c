"""Registry-driven tests of the generative models (``input_kind="generative"``): built as the
trainer builds them, forward/backward, a few steps lower their own loss, a safetensors round trip,
and seeded sampling (shape, range, determinism)."""

from __future__ import annotations

import pytest
import torch

from liandan.models.ddpm import beta_schedule
from liandan.registry import MODELS, Entry
from liandan.training.checkpoint import load_weights, save_weights

GEN = [e for e in MODELS.entries() if e.extra.get("input_kind") == "generative"]
SHAPE = (1, 8, 8)
SMALL = {"dcgan": {"width": 16, "nz": 16}, "ddpm": {"width": 16, "mults": (1, 2), "timesteps": 50}}


def build(entry: Entry, shape: tuple[int, ...] = SHAPE) -> torch.nn.Module:
    declared = entry.options()
    kw = {k: v for k, v in {"in_channels": shape[0], "input_shape": shape}.items() if k in declared}
    kw.update({k: v for k, v in SMALL.get(entry.name, {}).items() if k in declared})
    return entry.fn(**kw)


def own_loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's training objective on a fixed batch, with fixed randomness."""
    g = torch.Generator().manual_seed(3)
    if hasattr(model, "discriminator"):  # D's loss with G frozen: D must learn to separate
        z = torch.randn(len(x), model.nz, generator=g)
        with torch.no_grad():
            fake = model.generator(z)
        real, fake = model(x), model(fake)
        return (torch.nn.functional.softplus(-real) + torch.nn.functional.softplus(fake)).mean()
    t = torch.randint(0, model.timesteps, (len(x),), generator=g)
    noise = torch.randn(x.shape, generator=g)
    return torch.nn.functional.mse_loss(model(model.q_sample(x, t, noise), t), noise)


def test_generative_models_are_registered() -> None:
    assert {"dcgan", "ddpm"} <= {e.name for e in GEN}
    assert all(e.extra.get("paper") for e in GEN)


@pytest.mark.parametrize("entry", GEN, ids=[e.name for e in GEN])
def test_forward_backward_and_steps_lower_the_loss(entry: Entry) -> None:
    torch.manual_seed(0)
    model = build(entry).train()
    x = torch.rand(16, *SHAPE) * 2 - 1
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for step in range(6):
        loss = own_loss(model, x)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        if step == 0:
            params = model.discriminator if hasattr(model, "discriminator") else model.net
            missing = [n for n, p in params.named_parameters() if p.grad is None]
            assert not missing, f"{entry.name}: no gradient reaches {missing[:3]}"
        opt.step()
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0], f"{entry.name}: {losses}"


@pytest.mark.parametrize("entry", GEN, ids=[e.name for e in GEN])
def test_safetensors_round_trip(entry: Entry, tmp_path) -> None:
    torch.manual_seed(0)
    a = build(entry).eval()
    torch.manual_seed(1)
    b = build(entry).eval()
    save_weights(a, tmp_path / "w.safetensors")
    load_weights(b, tmp_path / "w.safetensors")
    x = torch.rand(4, *SHAPE)
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("entry", GEN, ids=[e.name for e in GEN])
def test_sample_shape_range_and_seed(entry: Entry) -> None:
    torch.manual_seed(0)
    model = build(entry).eval()
    s1 = model.sample(5, torch.Generator().manual_seed(7))
    s2 = model.sample(5, torch.Generator().manual_seed(7))
    s3 = model.sample(5, torch.Generator().manual_seed(8))
    assert s1.shape == (5, *SHAPE)
    assert s1.min() >= -1 and s1.max() <= 1
    assert torch.equal(s1, s2) and not torch.equal(s1, s3)


@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 32, 32)])
def test_dcgan_sizes(shape: tuple[int, ...]) -> None:
    model = build(MODELS.get("dcgan"), shape).eval()
    assert model.sample(2).shape == (2, *shape) and model(torch.rand(2, *shape)).shape == (2,)


def test_dcgan_rejects_sizes_it_cannot_make() -> None:
    with pytest.raises(ValueError, match="power of two"):
        build(MODELS.get("dcgan"), (1, 12, 12))


def test_beta_schedules() -> None:
    lin = beta_schedule("linear", 1000)
    assert lin[0].item() == pytest.approx(1e-4) and lin[-1].item() == pytest.approx(0.02)
    cos = beta_schedule("cosine", 1000)
    abar = torch.cumprod(1 - cos, 0)
    # Nichol & Dhariwal: ᾱ_t follows cos² closely, ᾱ_T ≈ 0, and it decays more slowly than linear early on
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    f = torch.cos((t + 0.008) / 1.008 * torch.pi / 2) ** 2 / torch.cos(torch.tensor(0.008 / 1.008 * torch.pi / 2)) ** 2
    assert torch.allclose(abar[:-5], f[:-5], atol=1e-6)
    assert abar[-1] < 1e-4 and abar[250] > torch.cumprod(1 - lin, 0)[250]
    with pytest.raises(ValueError):
        beta_schedule("quadratic", 10)


def test_ddim_fewer_steps_and_ema() -> None:
    torch.manual_seed(0)
    model = build(MODELS.get("ddpm")).eval()
    with torch.no_grad():
        model.net.out[-1].weight.normal_(0, 0.1)  # a non-trivial ε_θ, so EMA and DDIM have something to show
    model.update_ema()  # first update: d = min(0.999, 1/10), the EMA moves 90 % of the way
    x = model.sample(3, torch.Generator().manual_seed(0), steps=10)
    assert x.shape == (3, *SHAPE) and torch.isfinite(x).all()
    # eta=0 DDIM is deterministic given x_T, the same with or without the generator's later draws
    assert torch.equal(x, model.sample(3, torch.Generator().manual_seed(0), steps=10))
    w_ema, w = model.ema.out[-1].weight, model.net.out[-1].weight
    assert torch.allclose(w_ema, 0.9 * w, atol=1e-6)


def test_class_conditional_ddpm_sees_the_labels() -> None:
    from liandan.models.ddpm import DDPM

    torch.manual_seed(0)
    model = DDPM(1, 8, width=16, mults=(1, 2), timesteps=20, classes=10).eval()
    with torch.no_grad():
        model.net.out[-1].weight.normal_(0, 0.1)
        model.net.label.weight.normal_(0, 1.0)
    x, t = torch.randn(2, *SHAPE), torch.tensor([5, 5])
    assert not torch.allclose(model(x, t, torch.tensor([1, 1])), model(x, t, torch.tensor([2, 2])))
    threes = model.sample(2, torch.Generator().manual_seed(0), labels=torch.tensor([3, 3]))
    assert not torch.equal(threes, model.sample(2, torch.Generator().manual_seed(0), labels=torch.tensor([4, 4])))
