"""VeRA layer — Kopiczko, Blankevoort & Asano, "VeRA: Vector-based Random Matrix Adaptation" (ICLR 2024).

``h = W₀x + Λ_b B Λ_d A x``: ``A ∈ ℝ^{r×in}`` and ``B ∈ ℝ^{out×r}`` are frozen random matrices
shared by every adapted layer (each layer uses the top-left slice it needs); only the scaling
vectors ``d ∈ ℝ^r`` (init ``d_initial``) and ``b ∈ ℝ^out`` (init 0, so training starts from the
base model) are trained: r + out numbers per layer instead of LoRA's r·(in + out).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from liandan.adapters.base import dims, set_merged


def kaiming_uniform(shape: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    """U(−√(6/fan_in), √(6/fan_in)): Kaiming-uniform with gain √2 (the paper's random init)."""
    bound = math.sqrt(3.0) * math.sqrt(2.0) / math.sqrt(shape[1])
    return torch.empty(shape).uniform_(-bound, bound, generator=gen)


class VeraLinear(nn.Module):
    def __init__(self, base: nn.Module, vera_A: torch.Tensor, vera_B: torch.Tensor, d_initial: float,
                 dropout: float = 0.0) -> None:
        super().__init__()
        in_f, out_f = dims(base)
        self.base = base
        # frozen, regenerated from the seed: not saved with the weights (non-persistent)
        self.register_buffer("vera_A", vera_A[:, :in_f], persistent=False)  # (r, in)
        self.register_buffer("vera_B", vera_B[:out_f, :], persistent=False)  # (out, r)
        self.lambda_d = nn.Parameter(torch.full((vera_A.shape[0],), d_initial, dtype=base.weight.dtype))
        self.lambda_b = nn.Parameter(torch.zeros(out_f, dtype=base.weight.dtype))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """``Λ_b B Λ_d A``, shaped ``(out, in)``."""
        return (self.lambda_b[:, None] * self.vera_B) @ (self.lambda_d[:, None] * self.vera_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:
            return y
        z = self.lambda_d * (self.dropout(x) @ self.vera_A.T)  # (..., r)
        return y + self.lambda_b * (z @ self.vera_B.T)  # (..., out)

    def merge(self) -> None:
        set_merged(self, True)

    def unmerge(self) -> None:
        set_merged(self, False)
