"""Magnitude pruning: exactly the requested sparsity with torch's global L1 ranking, and
structured pruning that removes hidden units physically while computing what the original
computes with those units masked out."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import liandan
from liandan.compress import load_compressed, prune
from liandan.compress.measure import weight_matrices
from liandan.compress.prune import find_chains, magnitude_prune, structured_prune
from liandan.errors import LiandanError


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [getattr(m, n).detach() for m, n in weight_matrices(model)]


def test_unstructured_reaches_exact_sparsity_with_global_l1_ranking(teacher, tmp_path) -> None:
    out = tmp_path / "sparse"
    doc = prune(teacher, amount=0.3, out=out, repeats=5)
    orig = _weights(liandan.load_run(teacher).model)
    pruned = _weights(load_compressed(out).model)
    n = sum(w.numel() for w in orig)
    zeros = sum(int((w == 0).sum()) for w in pruned)
    assert zeros == round(0.3 * n) == doc["options"]["pruned_weights"]  # torch: round(amount * N) weights
    assert doc["sparsity"]["after"] == pytest.approx(zeros / n, abs=1e-6)
    # global magnitude ranking: every kept weight is at least as large as every pruned one
    kept = torch.cat([o[p != 0].abs() for o, p in zip(orig, pruned, strict=True)])
    gone = torch.cat([o[p == 0].abs() for o, p in zip(orig, pruned, strict=True)])
    assert kept.min() >= gone.max()
    assert all(torch.equal(o[p != 0], p[p != 0]) for o, p in zip(orig, pruned, strict=True))
    # dense kernels: same shapes, same parameter count, no speed-up to speak of
    assert doc["params"]["before"] == doc["params"]["after"] and doc["params"]["removed"] == 0
    assert doc["test"]["after"]["accuracy"] > 0.8
    # the output is a run directory the run's own evaluation reads (plain float weights)
    assert liandan.evaluate(out)["accuracy"] == pytest.approx(doc["test"]["after"]["accuracy"])


def test_magnitude_prune_matches_torch_per_layer_count() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    masks = magnitude_prune(model, 0.5)
    total = sum(m.weight_mask.numel() for m, _ in masks)
    assert sum(int((m.weight_mask == 0).sum()) for m, _ in masks) == round(0.5 * total)
    assert model[0].bias.ne(0).all()  # biases are never pruned


def _masked_original(model: nn.Module, kept: dict[str, list[int]]) -> nn.Module:
    """The original with the removed units' columns of the next Linear zeroed."""
    masked = copy.deepcopy(model)
    for c in find_chains(masked):
        drop = torch.ones(c.seq[c.first].out_features, dtype=torch.bool)
        drop[kept[c.name]] = False
        c.seq[c.nxt].weight.data[:, drop] = 0
    return masked


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_structured_equals_masked_original(norm: str) -> None:
    torch.manual_seed(0)
    model = liandan.create_model("mlp", num_classes=5, input_shape=(12,), hidden=[16, 8], norm=norm,
                                 activation="gelu", dropout=0.1).eval()
    if norm == "batch":  # non-trivial running statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    small = copy.deepcopy(model)
    kept = structured_prune(small, 0.5)
    assert {k: len(v) for k, v in kept.items()} == {"1": 8, "5" if norm == "batch" else "4": 4}
    x = torch.randn(32, 12)
    with torch.no_grad():
        torch.testing.assert_close(small(x), _masked_original(model, kept)(x), rtol=1e-5, atol=1e-6)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    # units ranked by the L2 norm of their incoming weights: the kept ones are the largest
    first = model[1].weight.detach().norm(dim=1)
    assert first[kept["1"]].min() >= first[[i for i in range(16) if i not in kept["1"]]].max()


def test_structured_prune_of_a_run_is_smaller_faster_and_reloads(teacher, tmp_path) -> None:
    out = tmp_path / "narrow"
    doc = prune(teacher, amount=0.5, structured=True, out=out, repeats=5)
    assert doc["structure"] == {"1": 64, "4": 32}
    assert doc["params"]["after"] == 64 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10 < doc["params"]["before"]
    assert doc["size_bytes"]["ratio"] > 2
    run = liandan.load_run(out)  # an mlp: the recipe itself carries the new widths
    assert run.recipe.model.options["hidden"] == [64, 32]
    x = torch.randn(16, 8, 8)
    with torch.no_grad():
        assert torch.equal(run.model(x), load_compressed(out).model(x))


def test_finetune_recovers_accuracy(teacher, tmp_path) -> None:
    out = tmp_path / "narrow-ft"
    doc = prune(teacher, amount=0.75, structured=True, out=out, finetune_epochs=2, latency=False)
    t = doc["test"]
    assert t["after"]["accuracy"] > t["after_prune_before_finetune"]["accuracy"] + 0.05
    assert (out / "metrics.csv").is_file() and liandan.load_run(out).status == "completed"


def test_structured_needs_linear_chains() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))  # LayerNorm mixes units
    with pytest.raises(LiandanError, match="no Linear→Linear chain"):
        structured_prune(model, 0.5)


@pytest.mark.parametrize("amount", [0.0, 1.0, -0.2, 1.5])
def test_amount_outside_open_interval(teacher, amount: float) -> None:
    with pytest.raises(LiandanError, match="strictly between 0 and 1"):
        prune(teacher, amount=amount)


def test_structure_reapplied_to_a_fresh_model_loads_the_pruned_weights() -> None:
    """A model whose recipe cannot say the new widths (lenet5's classifier) is cut again on load."""
    from liandan.compress.prune import apply_structure

    torch.manual_seed(0)
    model = liandan.create_model("lenet5", num_classes=10).eval()
    kept = structured_prune(model, 0.5)
    widths = {k: len(v) for k, v in kept.items()}
    assert set(widths) == {"classifier.1", "classifier.3"}
    fresh = apply_structure(liandan.create_model("lenet5", num_classes=10), widths).eval()
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
