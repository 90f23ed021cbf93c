"""OOD / shift sources: shape mapping and the severity knobs."""

from __future__ import annotations

import pytest
import torch

from liandan.data.pipeline import DataInfo
from liandan.errors import LiandanError
from liandan.evaluation.sources import apply_shift, gaussian_blur, load_mapped, parse_spec, rotate, to_shape

GREY32 = DataInfo(
    source="digits",
    task="classify",
    num_classes=10,
    input_shape=(1, 32, 32),
    class_names=[str(i) for i in range(10)],
    x_mean=[0.3],
    x_std=[0.4],
)


def _imgs(n: int = 4, c: int = 1, s: int = 8) -> torch.Tensor:
    return torch.rand(n, c, s, s, generator=torch.Generator().manual_seed(0))


def test_parse_spec():
    assert parse_spec("rotate:30") == ("rotate", "30")
    assert parse_spec("shapes:n=10,noise=0") == ("shapes", "n=10,noise=0")
    assert parse_spec("invert") == ("invert", "")
    with pytest.raises(LiandanError):
        parse_spec(":3")


def test_rotation():
    x = _imgs()
    assert torch.equal(rotate(x, 0), x) and torch.equal(rotate(x, 360), x)
    r90 = rotate(x, 90)
    assert torch.allclose(r90, torch.rot90(x, 1, (2, 3)), atol=1e-5) or torch.allclose(
        r90, torch.rot90(x, -1, (2, 3)), atol=1e-5
    )
    assert torch.allclose(rotate(rotate(x, 90), -90), x, atol=1e-5)


def test_blur_severity():
    x = _imgs(s=16)
    assert torch.equal(gaussian_blur(x, 0), x)
    b1, b2 = gaussian_blur(x, 0.8), gaussian_blur(x, 2.0)
    assert b1.shape == x.shape
    assert x.var() > b1.var() > b2.var()  # more blur, less pixel variance
    assert float(b2.mean()) == pytest.approx(float(x.mean()), abs=0.02)  # a normalised kernel keeps brightness
    const = torch.full((1, 1, 8, 8), 0.7)
    assert torch.allclose(gaussian_blur(const, 1.5), const)


def test_invert_and_noise():
    x = _imgs()
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 0.0, 1.0
    assert torch.allclose(apply_shift("invert", "", x, GREY32), 1 - x)
    assert torch.equal(apply_shift("noise", "0", x, GREY32), x)
    noisy = apply_shift("noise", "0.5", x, GREY32)
    assert 0 <= noisy.min() and noisy.max() <= 1  # images stay in their value range
    assert (noisy - x).abs().mean() > 0.05
    with pytest.raises(LiandanError, match="severity"):
        apply_shift("rotate", "lots", x, GREY32)
    with pytest.raises(LiandanError, match="image"):
        apply_shift("rotate", "10", torch.rand(5, 3), GREY32)


def test_to_shape_maps_channels_and_size():
    rgb = _imgs(c=3, s=16)
    grey = to_shape(rgb, (1, 32, 32))
    assert grey.shape == (4, 1, 32, 32)
    assert torch.allclose(to_shape(rgb, (1, 16, 16)), rgb.mean(1, keepdim=True))
    assert to_shape(_imgs(c=1), (3, 8, 8)).shape == (4, 3, 8, 8)
    assert to_shape(torch.rand(4, 64), (1, 8, 8)).shape == (4, 1, 8, 8)
    with pytest.raises(LiandanError, match="shape"):
        to_shape(torch.rand(4, 13), (30,))
    with pytest.raises(LiandanError, match="not an image"):
        to_shape(torch.rand(4, 13), (1, 8, 8))


def test_data_sources_render_at_the_runs_shape():
    x, y, names = load_mapped("shapes", "n=20", GREY32)
    assert x.shape == (20, 1, 32, 32)  # rendered grey at 32, not resized
    assert names[0] == "circle" and 0 <= x.min() and x.max() <= 1
    x8, _, _ = load_mapped("shapes", "n=20,size=8", GREY32)  # rendered at 8, resized to the run's 32
    assert x8.shape == (20, 1, 32, 32)
    d, yd, _ = load_mapped("digits", "", GREY32, max_samples=30)
    assert d.shape == (30, 1, 32, 32) and yd.dtype == torch.int64
    with pytest.raises(LiandanError, match="unknown data source"):
        load_mapped("nosuchset", "", GREY32)
    with pytest.raises(LiandanError, match="key=value"):
        load_mapped("shapes", "n", GREY32)
    with pytest.raises(LiandanError, match="shape"):
        load_mapped("wine", "", GREY32)
