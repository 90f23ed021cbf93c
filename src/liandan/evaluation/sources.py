"""Inputs to evaluate or score a run on: another data source mapped to the run's input shape, or a
shift of the run's own split (DESIGN.md: ``ood --ood SOURCE``).

Spec grammar:

* ``NAME`` or ``NAME:key=value,key=value`` — any registered data source (``liandan list data``).
  Images are rendered at the run's size and channels when the source has ``size`` /
  ``grayscale`` options, otherwise resized (bilinear, antialiased) and channel-mapped
  (RGB → grey by the channel mean, grey → RGB by repetition). A tabular source must have the
  run's number of features.
* Shifts of the in-distribution split (labels kept), with a severity knob (0 = no shift):
  ``rotate:DEG`` (default 30), ``blur:SIGMA`` (Gaussian, pixels, default 1), ``invert``
  (``lo + hi − x`` per channel), ``noise:S`` (additive Gaussian noise of ``S`` training standard
  deviations per channel, default 1), as in the corruption benchmarks of Hendrycks & Dietterich,
  "Benchmarking Neural Network Robustness to Common Corruptions and Perturbations" (ICLR 2019).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from liandan.data.pipeline import DataInfo, DataModule
from liandan.errors import LiandanError

SHIFTS = {"rotate": 30.0, "blur": 1.0, "invert": None, "noise": 1.0}
IMAGE_ONLY = {"rotate", "blur"}


def parse_spec(spec: str) -> tuple[str, str]:
    name, _, arg = spec.strip().partition(":")
    if not name:
        raise LiandanError(f"empty source spec {spec!r}")
    return name, arg


def resolve_source(
    spec: str,
    data: DataModule,
    info: DataInfo,
    *,
    split: str = "test",
    seed: int = 0,
    max_samples: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """Raw inputs (the run's shape, un-normalised), labels (or None) and a label for ``spec``."""
    from liandan.evaluation.runio import raw_split

    name, arg = parse_spec(spec)
    if name in SHIFTS:
        x, y = raw_split(data, split, max_samples, seed)
        return apply_shift(name, arg, x, info, seed), y, spec
    x, y, names = load_mapped(name, arg, info, seed, max_samples)
    from liandan.training.tasks import task_class

    same_classes = names is None or info.class_names is None or list(names) == list(info.class_names)
    if not (
        task_class(info.task).is_classification
        and y is not None
        and y.dtype == torch.int64
        and same_classes
        and (not len(y) or int(y.max()) < max(info.num_classes, 1))
    ):
        y = None  # labels that do not mean the run's classes: usable as OOD inputs only
    return x, y, spec


# --- shifts -------------------------------------------------------------------------------------


def apply_shift(name: str, arg: str, x: torch.Tensor, info: DataInfo, seed: int = 0) -> torch.Tensor:
    """``x`` (raw, the run's shape) under the shift ``name`` with severity ``arg``."""
    if name in IMAGE_ONLY and x.dim() != 4:
        raise LiandanError(f"shift {name!r} needs image data; this run's inputs have shape {tuple(x.shape[1:])}")
    if name == "invert":
        if arg:
            raise LiandanError("shift 'invert' takes no argument")
        lo, hi = _range(x)
        return lo + hi - x
    try:
        sev = float(arg) if arg else float(SHIFTS[name])
    except ValueError:
        raise LiandanError(f"shift {name}:{arg}: the severity must be a number") from None
    if name == "rotate":
        return rotate(x, sev)
    if name == "blur":
        return gaussian_blur(x, sev)
    std = torch.tensor(info.x_std, dtype=x.dtype) if info.x_std else x.std(0).mean().expand(x.shape[1])
    shape = (1, -1) + (1,) * (x.dim() - 2)
    g = torch.Generator().manual_seed(seed + 7)
    noisy = x + sev * std.view(shape) * torch.randn(x.shape, generator=g)
    if x.dim() == 4:  # images stay in their value range
        lo, hi = _range(x)
        noisy = torch.maximum(torch.minimum(noisy, hi), lo)
    return noisy


def _range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dims = [0] + list(range(2, x.dim()))
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return x.amin(dims).view(shape), x.amax(dims).view(shape)


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate images about their centre (bilinear, zero fill)."""
    if degrees % 360 == 0:
        return x.clone()
    t = math.radians(degrees)
    theta = torch.tensor([[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0]], dtype=x.dtype)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with standard deviation ``sigma`` pixels (reflect padding)."""
    if sigma <= 0:
        return x.clone()
    r = max(1, math.ceil(3 * sigma))
    r = min(r, x.shape[-1] - 1, x.shape[-2] - 1)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype) / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    out = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


# --- other data sources -------------------------------------------------------------------------


def _parse_options(arg: str) -> dict[str, Any]:
    import yaml

    opts: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in arg.split(","))):
        key, eq, val = part.partition("=")
        if not eq:
            raise LiandanError(f"source option {part!r}: expected key=value")
        opts[key.strip()] = yaml.safe_load(val)
    return opts


def load_mapped(
    name: str, arg: str, info: DataInfo, seed: int = 0, max_samples: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[str] | None]:
    """Load data source ``name``, map its inputs to the run's input shape; also its labels and class names."""
    from liandan.data.pipeline import load_source
    from liandan.registry import DATA

    entry = DATA.get(name)
    accepted = entry.options()
    opts = _parse_options(arg)
    shape = info.input_shape
    if info.is_image and shape[1] == shape[2] and "size" in accepted:
        # Render at the resolution the run's own images were *made* at: digits are 8×8 even when
        # a recipe upsamples them to 32×32, so shapes are drawn at 8×8 and upsampled the same way
        # (to_shape below); otherwise the OOD set would differ from ID data in sharpness alone.
        id_size = DATA.get(info.source).options().get("size") if info.source in DATA else None
        native = id_size.default if id_size is not None and isinstance(id_size.default, int) else shape[1]
        opts.setdefault("size", native)
    if info.is_image and shape[0] == 1 and "grayscale" in accepted:
        opts.setdefault("grayscale", True)
    if max_samples and "n" in accepted and isinstance(accepted["n"].default, int):
        opts.setdefault("n", min(accepted["n"].default, max_samples))
    if name == info.source and "seed" in accepted:
        opts.setdefault("seed", seed + 1)  # other samples than the run's own
    src = load_source(name, opts, seed)
    idx = np.arange(len(src))
    if max_samples is not None and len(idx) > max_samples:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_samples, replace=False))
    if src.x is not None:
        x = src.x[torch.as_tensor(idx)]
    else:
        x = torch.stack([src.dataset[int(i)][0] for i in idx])
    return to_shape(x.float(), shape, name), src.y[torch.as_tensor(idx)], src.class_names


def to_shape(x: torch.Tensor, shape: tuple[int, ...], name: str = "source") -> torch.Tensor:
    """Resize / channel-map images, or check the feature count of tabular inputs."""
    if tuple(x.shape[1:]) == tuple(shape):
        return x
    if x.dim() == 2 and x.shape[1] == math.prod(shape):  # flat vectors of the right size (e.g. 8×8 → 64)
        return x.reshape(len(x), *shape)
    if len(shape) != 3:
        raise LiandanError(f"{name} has inputs of shape {tuple(x.shape[1:])}; the run takes {tuple(shape)}")
    if x.dim() != 4:
        raise LiandanError(
            f"{name} is not an image source (shape {tuple(x.shape[1:])}); the run takes images of shape {tuple(shape)}"
        )
    c = shape[0]
    if x.shape[1] != c:
        if c == 1:
            x = x.mean(1, keepdim=True)
        elif x.shape[1] == 1:
            x = x.expand(-1, c, -1, -1)
        elif x.shape[1] > c:
            x = x[:, :c]
        else:
            raise LiandanError(f"cannot map {x.shape[1]} channels of {name} to the run's {c}")
    if tuple(x.shape[2:]) != tuple(shape[1:]):
        x = F.interpolate(x, size=tuple(shape[1:]), mode="bilinear", align_corners=False, antialias=True)
    return x.contiguous()
