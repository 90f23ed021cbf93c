"""LoRA layer — Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models" (ICLR 2022).

``h = W₀x + (α/r)·B A x`` with ``A ∈ ℝ^{r×in}`` (Kaiming-uniform, a = √5, as ``nn.Linear`` and
peft) and ``B ∈ ℝ^{out×r}`` zero, so training starts from the base model exactly. rsLoRA
(Kalajdzievski 2023) scales by ``α/√r`` instead, which keeps the update's size stable as r grows.

``active_rank`` truncates to the first b ranks, at the same scale — DyLoRA's nested ranks
(:mod:`liandan.adapters.dylora`) — without a second layer class.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from liandan.adapters.base import dims, low_rank_pair, set_merged


class LoraLinear(nn.Module):
    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0, rslora: bool = False) -> None:
        super().__init__()
        in_f, out_f = dims(base)
        self.base, self.r, self.alpha, self.rslora = base, r, alpha, rslora
        self.lora_A, self.lora_B = low_rank_pair(r, in_f, out_f, base.weight.dtype)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.active_rank: int | None = None  # None: all r ranks
        self.merged = False

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.r) if self.rslora else self.r)

    def delta_weight(self) -> torch.Tensor:
        """``(α/r)·B[:, :b] A[:b]`` (b = the active rank), shaped ``(out, in)``."""
        b = self.active_rank or self.r
        return (self.lora_B[:, :b] @ self.lora_A[:b]) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # (..., out)
        if self.merged:
            return y
        b = self.active_rank or self.r
        z = self.dropout(x) @ self.lora_A[:b].T  # (..., b): the low-rank code
        return y + (z @ self.lora_B[:, :b].T) * self.scaling

    def merge(self) -> None:
        set_merged(self, True)

    def unmerge(self) -> None:
        set_merged(self, False)

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, rslora={self.rslora}"
