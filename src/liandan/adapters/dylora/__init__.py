"""DyLoRA — Valipour et al., "DyLoRA: Parameter-Efficient Tuning of Pre-trained Models using
Dynamic Search-Free Low-Rank Adaptation" (EACL 2023).

One LoRA of rank r trained so that every leading slice works: each training forward samples
b ~ U{1..r} for all layers at once and uses ``A[:b]``, ``B[:, :b]``. Afterwards any rank ≤ r
serves (``eval_rank``) without retraining — one run instead of a search over ranks.

The scale stays α/r at every b. The paper's α/b multiplies the update of a rank-1 sample by r
(16× at r = 16); on bench/peft_arith.py that diverged (exact match 0.08 at rank 16, against
0.68 with α/r), and updating only the b-th component (the paper's frozen variant) reached 0.02.
"""

from __future__ import annotations

import torch
from torch import nn

from liandan.adapters.inject import Adapter, Targets
from liandan.adapters.lora.layer import LoraLinear
from liandan.errors import LiandanError
from liandan.registry import register_adapter


class RankSampler:
    """The rank every DyLoRA layer of one model uses in the current forward pass."""

    def __init__(self, r: int, eval_rank: int | None, seed: int) -> None:
        self.r, self.eval_rank = r, eval_rank or r
        self.gen = torch.Generator().manual_seed(seed)
        self.rank = self.eval_rank

    def before_forward(self, model: nn.Module, _args: tuple) -> None:
        # training: a fresh rank per forward (per step); evaluation: the rank chosen to serve
        self.rank = int(torch.randint(1, self.r + 1, (1,), generator=self.gen)) if model.training else self.eval_rank


class DyLoraLinear(LoraLinear):
    """A LoRA layer at its model's current rank: the sampled one in a training forward, the serving
    rank otherwise. A merge folds in the serving rank (whatever rank the last training step drew)
    and an unmerge takes out the same one."""

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float, sampler: RankSampler) -> None:
        super().__init__(base, r, alpha, dropout)
        self.sampler = sampler  # shared by the model's layers (a deepcopy of the model keeps it shared)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.merged:
            self.active_rank = self.sampler.rank
        return super().forward(x)

    def merge(self) -> None:
        if not self.merged:
            self.active_rank = self.sampler.eval_rank
        super().merge()


def set_rank(model: nn.Module, rank: int) -> None:
    """Serve ``model`` at ``rank`` (≤ r) from now on."""
    for m in model.modules():
        if isinstance(getattr(m, "_dylora", None), RankSampler):
            if not 1 <= rank <= m._dylora.r:
                raise ValueError(f"rank must be in 1..{m._dylora.r}, got {rank}")
            m._dylora.eval_rank = m._dylora.rank = rank


@register_adapter("dylora")
def dylora(r: int = 8, alpha: float = 16.0, dropout: float = 0.0, eval_rank: int | None = None, seed: int = 0,
           targets: Targets = None) -> Adapter:
    """LoRA trained at a random rank b ≤ r each step, usable at any rank (Valipour et al. 2023).

    Args:
        r: largest rank; each training step trains the first b rows and columns, b drawn from 1..r
        alpha: scale numerator: the update is multiplied by alpha / r (alpha = 2r is a common choice)
        dropout: dropout probability on the adapter's input (0: none)
        eval_rank: rank used to evaluate and serve (1..r); None: r
        seed: random seed of the per-step rank draws
        targets: layers to adapt, matched as in peft (a module named t or ending in .t), or all-linear (every
            Linear/Conv1D but the output head); None: peft's default for the architecture (query and value
            projections), else every Linear but the last
    """
    if eval_rank is not None and not 1 <= eval_rank <= r:
        raise LiandanError(f"adapter.eval_rank must be in 1..{r} (the trained rank), got {eval_rank}")
    sampler = RankSampler(r, eval_rank, seed)

    def wrap(name: str, layer: nn.Module) -> nn.Module:
        return DyLoraLinear(layer, r, alpha, dropout, sampler)

    def finish(model: nn.Module, _wrapped: list[nn.Module]) -> None:
        model._dylora = sampler
        model.register_forward_pre_hook(sampler.before_forward)

    return Adapter("dylora", targets, wrap, finish=finish)
