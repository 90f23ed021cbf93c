"""Mixture of experts: routing arithmetic, capacity and token dropping, the Switch balancing
loss, and expert utilisation on a real training run."""

from __future__ import annotations

import math

import pytest
import torch

from liandan.models.moe import MoE, expert_counts, reset_expert_counts


def _moe(**kw) -> MoE:
    torch.manual_seed(0)
    return MoE(8, 16, **{"experts": 4, **kw})


def test_top1_output_is_router_probability_times_chosen_expert() -> None:
    moe = _moe(top_k=1).eval()
    x = torch.randn(10, 8)
    probs = moe.router(x).softmax(-1)
    p, i = probs.max(-1)
    expected = torch.stack([p[n] * moe.experts[int(i[n])](x[n]) for n in range(10)])
    torch.testing.assert_close(moe(x), expected)
    assert moe.counts.tolist() == torch.bincount(i, minlength=4).tolist()


def test_top2_gates_are_renormalised() -> None:
    moe = _moe(top_k=2).eval()
    x = torch.randn(6, 8)
    p, i = moe.router(x).softmax(-1).topk(2, -1)
    g = p / p.sum(-1, keepdim=True)
    expected = torch.stack([sum(g[n, j] * moe.experts[int(i[n, j])](x[n]) for j in range(2)) for n in range(6)])
    torch.testing.assert_close(moe(x), expected)
    assert int(moe.counts.sum()) == 12


def test_capacity_drops_overflow_in_training_only() -> None:
    moe = _moe(capacity_factor=1.0)
    with torch.no_grad():  # every token prefers expert 0
        moe.router.weight.zero_()
        moe.router.weight[0] = 1.0
    x = torch.randn(16, 8).abs()  # positive inputs: expert 0 has the highest logit for all
    cap = math.ceil(1.0 * 16 / 4)
    out = moe.train()(x)
    assert moe.counts.tolist() == [cap, 0, 0, 0] and int(moe.dropped) == 16 - cap
    # first come, first served: tokens after the capacity get nothing from the layer
    assert (out[cap:] == 0).all() and (out[:cap] != 0).any(-1).all()
    reset_expert_counts(moe)
    moe.eval()(x)  # eval keeps every assignment: predictions never depend on the batch
    assert moe.counts.tolist() == [16, 0, 0, 0] and int(moe.dropped) == 0


def test_switch_balancing_loss_is_alpha_when_uniform_and_grows_with_collapse() -> None:
    moe = _moe(aux_weight=0.01)
    x = torch.randn(64, 8)
    with torch.no_grad():
        moe.router.weight.zero_()  # uniform probabilities: E · Σ f_e · (1/E) = 1
    moe(x)
    assert float(moe.aux.detach()) == pytest.approx(0.01)
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0] = 50.0  # collapsed onto expert 0: f_0 = P_0 ≈ 1 -> E
    moe(x.abs())
    assert float(moe.aux.detach()) == pytest.approx(0.01 * 4, rel=1e-3)


def test_balancing_loss_trains_the_router() -> None:
    moe = _moe()
    moe(torch.randn(32, 8))
    moe.aux.backward()
    assert moe.router.weight.grad is not None and moe.router.weight.grad.abs().sum() > 0


def test_digits_moe_uses_every_expert(moe_run) -> None:
    """A short digits-moe run: accurate, and every expert of every layer gets test digits."""
    run, data = moe_run
    assert run.summary["final"]["test"]["accuracy"] >= 0.93
    model = run.model
    reset_expert_counts(model)
    with torch.no_grad():
        for xb, _ in data.eval_batches("test").epoch(0):
            model(xb)
    counts = model.expert_counts
    assert counts.shape == (2, 4) and torch.equal(counts, expert_counts(model))
    assert int(counts.min()) > 0, counts.tolist()
    assert int(counts.sum()) == 2 * len(data.indices["test"])  # top-1, nothing dropped in eval
    # and the load is not wildly unbalanced: no expert takes more than 3/4 of the digits
    assert float((counts.max(1).values / counts.sum(1)).max()) < 0.75, counts.tolist()


@pytest.fixture(scope="module")
def moe_run(tmp_path_factory):
    import liandan
    from liandan.training.run import load_run

    out = tmp_path_factory.mktemp("moe") / "run"
    liandan.train("digits-moe", overrides=["train.epochs=10", "doctor.enabled=false", "train.tensorboard=false",
                                           "report=false"],
                  out=out, quiet=True)
    run = load_run(out)
    from liandan.data.pipeline import build_data

    return run, build_data(run.recipe.data, run.recipe.seed, run.recipe.task)
