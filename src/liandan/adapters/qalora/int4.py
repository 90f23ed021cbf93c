"""Group-wise asymmetric INT4 weights — the base model of QA-LoRA (Xu et al. 2023, §3.2–3.3).

Each row of ``W ∈ ℝ^{out×in}`` is cut along the input dimension into ``in/g`` groups of g columns;
group j of row o is stored as 4-bit integers with its own min–max affine map (the paper's eq. 1)::

    α = (max − min) / (2ᴺ − 1),   β = min,   Ŵ = round((W − β) / α) ∈ {0..15},   W̃ = α·Ŵ + β

so the error of each weight is at most α/2. ``scales`` (α) and ``zeros`` (β, the zero point in float
form, as in the paper and GPTQ's float-zero variant) are ``(out, in/g)`` float32; the codes are
``(out, in/2)`` uint8, two per byte (high nibble first). Bytes per parameter: 0.5 + 8/g (0.75 at g = 32).

β is a float on purpose: QA-LoRA's merge adds a per-group constant to it (``β' = β + ΔW_group``).
With an integer zero point z in ``α·(Ŵ − z)`` the same fold would need ``z' = z − ΔW/α``, not an
integer; float32 (not GPTQ's float16) keeps the fold exact to float rounding.
"""

from __future__ import annotations

import torch
from torch import nn

from liandan.adapters.qlora.layer import QuantizedLinear, out_in_weight
from liandan.adapters.qlora.nf4 import pack4, unpack4

LEVELS = 15  # 2⁴ − 1


def quantize_int4(w: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``w (out, in)`` → ``(codes uint8 (out, in), scales (out, in/g), zeros (out, in/g))`` (float32)."""
    out_f, in_f = w.shape
    wg = w.detach().float().reshape(out_f, in_f // group, group)
    lo, hi = wg.amin(dim=-1), wg.amax(dim=-1)
    scales = (hi - lo) / LEVELS
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))  # a constant group: any scale is exact
    codes = ((wg - lo[..., None]) / scales[..., None]).round().clamp(0, LEVELS).to(torch.uint8)
    return codes.reshape(out_f, in_f), scales, lo


def dequantize_int4(codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor) -> torch.Tensor:
    """``α·Ŵ + β`` per group: float32 ``(out, in)``."""
    out_f, in_f = codes.shape
    q = codes.float().reshape(out_f, scales.shape[1], -1)
    return (q * scales[..., None] + zeros[..., None]).reshape(out_f, in_f)


class Int4Linear(QuantizedLinear):
    """A frozen Linear/Conv1D stored as group-wise min–max INT4 (group ``group`` along the input)."""

    def __init__(self, layer: nn.Module, group: int = 32) -> None:
        super().__init__(layer)
        if self.in_features % group or group % 2:
            raise ValueError(f"group size {group} must be even and divide in_features={self.in_features}")
        self.group = group
        codes, scales, zeros = quantize_int4(out_in_weight(layer), group)
        self.register_buffer("qweight", pack4(codes.reshape(-1)).reshape(self.out_features, -1))  # (out, in/2)
        self.register_buffer("scales", scales)  # α, (out, in/g)
        self.register_buffer("zeros", zeros)  # β, (out, in/g)

    def codes(self) -> torch.Tensor:
        """The 4-bit integers Ŵ, uint8 ``(out, in)``."""
        return unpack4(self.qweight).reshape(self.out_features, self.in_features)

    def dequantize(self) -> torch.Tensor:
        return dequantize_int4(self.codes(), self.scales, self.zeros)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, int4 group={self.group}"
