"""QA-LoRA layer — Xu et al., "QA-LoRA: Quantization-Aware Low-Rank Adaptation of Large Language
Models" (ICLR 2024).

The base is INT4 with group-wise min–max quantisation (:class:`~liandan.adapters.qalora.int4.Int4Linear`,
group g along the input). The adapter sees the input average-pooled over the same groups::

    x̄ⱼ = (1/g)·Σ_{k∈group j} x_k            x̄ ∈ ℝ^{in/g}
    y = x·W̃ᵀ + (α/r)·B A x̄                 A ∈ ℝ^{r×(in/g)}, B ∈ ℝ^{out×r} (zero)

so the update, written on the full input, is ``ΔW[o, k] = (α/r)·(BA)[o, j(k)] / g``: one constant per
(output row, group) — exactly the granularity of the zero points β. Merging therefore folds it into
them, ``β'[o, j] = β[o, j] + (α/r)·(BA)[o, j] / g``, with the codes Ŵ and scales α untouched: the
merged model is still pure INT4 and computes the same function (paper §3.3: "no post-training
quantisation, no accuracy loss"), unlike QLoRA, whose merged W̃ + ΔW is float.

Pooling here is the mean over each group (average pooling); peft's GPTQ variant multiplies that
mean by in/g, and a plain sum differs by g: constant factors that α and the learning rate absorb.
The trainable count is r·(in/g + out) against LoRA's r·(in + out).
"""

from __future__ import annotations

import torch
from torch import nn

from liandan.adapters.base import dims, low_rank_pair
from liandan.adapters.qalora.int4 import Int4Linear


class QALoraLinear(nn.Module):
    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0, group: int = 32) -> None:
        super().__init__()
        in_f, out_f = dims(base)
        dtype = base.weight.dtype
        self.base = Int4Linear(base, group)
        self.r, self.alpha, self.group = r, alpha, group
        self.lora_A, self.lora_B = low_rank_pair(r, in_f // group, out_f, dtype)  # A reads the pooled input
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    @property
    def scaling(self) -> float:
        return self.alpha / self.r

    def group_delta(self) -> torch.Tensor:
        """``(α/r)·BA / g``, shaped ``(out, in/g)``: the update's value on each (row, group)."""
        return (self.lora_B @ self.lora_A) * (self.scaling / self.group)

    def delta_weight(self) -> torch.Tensor:
        """The update on the full input, ``(out, in)``: constant within each group."""
        return self.group_delta().repeat_interleave(self.group, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:
            return y
        pooled = self.dropout(x).unflatten(-1, (-1, self.group)).mean(-1)  # (..., in/g)
        return y + (pooled @ self.lora_A.T @ self.lora_B.T) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the INT4 zero points: ``β += (α/r)·BA / g``; codes unchanged."""
        if not self.merged:
            self.base.zeros += self.group_delta().float()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.zeros -= self.group_delta().float()
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, group={self.group}"
