"""Probe primitives on synthetic tensors, and that probe hooks never outlive a probe step."""

from __future__ import annotations

import torch

from liandan.doctor.probes import activation_stats, identical_fraction, input_stats, output_stats


def test_identical_fraction():
    w = torch.randn(8, 5)
    assert identical_fraction(w) == 0.0
    w[3] = w[5]
    assert identical_fraction(w) == 0.25
    assert identical_fraction(torch.zeros(4, 3, 2, 2)) == 1.0  # conv filters too
    w = torch.randn(6, 6)
    state = torch.random.get_rng_state()
    identical_fraction(w)  # uses its own generator: the run's random stream is untouched
    assert torch.equal(state, torch.random.get_rng_state())


def test_activation_stats_dead_and_saturated():
    x = torch.randn(32, 4)
    out = torch.relu(x)
    out[:, :3] = 0  # three of four units never fire
    assert activation_stats("relu", x, out)["dead"] == 0.75
    pre = torch.full((10, 4), 6.0)
    pre[:, 0] = 0.1
    st = activation_stats("sigmoid", pre, torch.sigmoid(pre))
    assert st["saturated"] == 0.75


def test_output_and_input_stats():
    probs = torch.softmax(torch.randn(5, 3), -1)
    assert output_stats(probs)["row_sum_dev"] < 1e-5
    assert output_stats(torch.randn(5, 3) * 3)["row_sum_dev"] > 1e-3
    st = input_stats(torch.tensor([[1.0, 1000.0], [3.0, 3000.0]]))
    assert st["max"] == 3000.0 and len(st["mean"]) == 2


def test_probe_hooks_are_removed_after_training(tmp_path):
    import liandan

    run = liandan.train({"data": {"source": "iris", "batch_size": 16}, "model": {"name": "mlp", "hidden": [8]},
                         "train": {"epochs": 2, "tensorboard": False}, "doctor": {"probe_every": 1}},
                        out=tmp_path / "r", quiet=True)
    for m in run.model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    lines = (run.dir / "doctor_probes.jsonl").read_text().splitlines()
    assert sum('"type": "probe"' in ln for ln in lines) == run.summary["steps"]  # probe_every=1: every step
