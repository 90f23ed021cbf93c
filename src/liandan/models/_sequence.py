"""Shapes shared by the sequence models: everything becomes ``(B, T, F)``."""

from __future__ import annotations

import torch


def sequence_shape(input_shape: tuple[int, ...]) -> tuple[int, int]:
    """``(T, F)`` of one sample: ``(T,)`` is a univariate series, ``(C, H, W)`` is read row by row
    (T = H steps of C·W features, the "sequential MNIST" reading)."""
    match len(input_shape):
        case 1:
            return input_shape[0], 1
        case 2:
            return input_shape[0], input_shape[1]
        case 3:
            c, h, w = input_shape
            return h, c * w
    raise ValueError(f"sequence models take (T, F), (T,) or (C, H, W) samples, not {tuple(input_shape)}")


def as_sequence(x: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` / ``(B, T, F)`` / ``(B, C, H, W)`` -> ``(B, T, F)``."""
    if x.dim() == 2:
        return x.unsqueeze(-1)  # (B, T, 1)
    if x.dim() == 4:
        b, c, h, w = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, h, c * w)  # (B, H, C·W)
    return x

