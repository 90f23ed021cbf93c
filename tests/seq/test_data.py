"""The sequence sources: shapes, seeds, the adding problem's definition, and per-feature
normalisation of (N, T, F) features by the pipeline."""

from __future__ import annotations

import pytest
import torch

from liandan.data import build_data
from liandan.data.sequences import adding, sine
from liandan.errors import LiandanError
from liandan.recipe import DataConfig


def test_sine_windows_and_targets() -> None:
    src = sine(n=50, length=20, horizon=3, noise=0.0)
    assert src.task == "regress" and src.x.shape == (50, 20, 1) and src.y.shape == (50, 3)
    assert torch.equal(sine(n=50, seed=1).x, sine(n=50, seed=1).x)
    assert not torch.equal(sine(n=50, seed=1).x, sine(n=50, seed=2).x)
    # without noise the target continues the window's signal: one sum of sines over all 23 steps
    import numpy as np

    t = np.arange(23) * 0.1
    full = torch.cat([src.x[0, :, 0], src.y[0]])
    basis = np.stack([f(w * t) for w in (1.0, 2.3, 3.7) for f in (np.sin, np.cos)], 1)
    coef, res, *_ = np.linalg.lstsq(basis, full.numpy(), rcond=None)
    assert float(np.abs(basis @ coef - full.numpy()).max()) < 1e-5
    # step is the sampling interval: a finer step gives a smoother window
    fine, coarse = sine(n=200, step=0.02, noise=0.0), sine(n=200, step=0.2, noise=0.0)
    assert fine.x.diff(dim=1).abs().mean() < coarse.x.diff(dim=1).abs().mean() / 5


def test_adding_problem_definition() -> None:
    src = adding(n=300, length=60, seed=3)
    assert src.x.shape == (300, 60, 2) and src.y.shape == (300, 1)
    values, marker = src.x[..., 0], src.x[..., 1]
    assert (marker.sum(1) == 2).all()
    assert (marker[:, :30].sum(1) == 1).all() and (marker[:, 30:].sum(1) == 1).all()  # one per half
    torch.testing.assert_close(src.y[:, 0], (values * marker).sum(1))
    assert ((values >= 0) & (values <= 1)).all()
    with pytest.raises(LiandanError, match="length ≥ 50"):
        adding(length=20)


@pytest.mark.parametrize("source", ["sine", "adding"])
def test_pipeline_standardises_each_feature_over_samples_and_time(source: str) -> None:
    dm = build_data(DataConfig(source=source, n=400, batch_size=16), seed=0)
    assert dm.info.task == "regress" and len(dm.info.input_shape) == 2  # (T, F): not an image
    assert len(dm.info.x_mean) == dm.info.input_shape[1]  # one statistic per feature
    train = dm.info.normalize_x(dm.source.x[torch.as_tensor(dm.indices["train"])])
    assert train.mean((0, 1)).abs().max() < 1e-4 and (train.std((0, 1)) - 1).abs().max() < 1e-3
    xb, yb = next(iter(dm.train.epoch(0)))
    assert xb.shape == (16, *dm.info.input_shape) and yb.dim() == 2
