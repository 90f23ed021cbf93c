"""Small shared building blocks: activations and normalisation layers by name."""

from __future__ import annotations

from torch import nn

from liandan.errors import LiandanError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "silu": nn.SiLU, "identity": nn.Identity,
}
NORMS = ("none", "batch", "layer", "instance", "group")


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise LiandanError(f"unknown activation {name!r}; available: {', '.join(ACTIVATIONS)}") from None


def norm1d(kind: str, features: int) -> nn.Module:
    """Normalisation for (B, F) features. ``instance`` and ``group`` fall back to LayerNorm-like
    groups since a single feature vector has no spatial axis."""
    match kind:
        case "none":
            return nn.Identity()
        case "batch":
            return nn.BatchNorm1d(features)
        case "layer" | "instance":
            return nn.LayerNorm(features)
        case "group":
            return nn.GroupNorm(_groups(features), features)
    raise LiandanError(f"unknown norm {kind!r}; available: {', '.join(NORMS)}")


def norm2d(kind: str, channels: int) -> nn.Module:
    """Normalisation for (B, C, H, W) maps; ``layer`` is GroupNorm with one group (LayerNorm over C,H,W)."""
    match kind:
        case "none":
            return nn.Identity()
        case "batch":
            return nn.BatchNorm2d(channels)
        case "layer":
            return nn.GroupNorm(1, channels)
        case "instance":
            return nn.InstanceNorm2d(channels, affine=True)
        case "group":
            return nn.GroupNorm(_groups(channels), channels)
    raise LiandanError(f"unknown norm {kind!r}; available: {', '.join(NORMS)}")


def _groups(channels: int) -> int:
    for g in (32, 16, 8, 4, 2):
        if channels % g == 0 and channels // g >= 2:
            return g
    return 1
