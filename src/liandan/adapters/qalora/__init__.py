"""QA-LoRA (Xu et al. 2023): LoRA on group-pooled inputs over a group-wise INT4 base, so the trained
adapter merges into the INT4 zero points exactly: the fine-tuned model stays INT4, no re-quantisation."""

from __future__ import annotations

from torch import nn

from liandan.adapters.base import dims
from liandan.adapters.inject import Adapter, Targets
from liandan.adapters.qalora.int4 import Int4Linear
from liandan.adapters.qalora.layer import QALoraLinear
from liandan.errors import LiandanError
from liandan.registry import register_adapter

__all__ = ["Int4Linear", "QALoraLinear", "qalora"]


@register_adapter("qalora", tags=("quantized",))
def qalora(r: int = 8, alpha: float = 16.0, dropout: float = 0.0, group_size: int = 32,
           targets: Targets = None) -> Adapter:
    """LoRA on g-pooled inputs over an INT4 group-g base; merges into the zeros, stays INT4 (Xu et al. 2023).

    Args:
        r: rank of the LoRA update
        alpha: scale numerator: the update is multiplied by alpha / r (alpha = 2r is a common choice)
        dropout: dropout probability on the adapter's input (0: none)
        group_size: input-group size of the INT4 base and of the adapter's input pooling (even; must divide
            every target's input width)
        targets: layers to adapt, matched as in peft (a module named t or ending in .t), or all-linear (every
            Linear/Conv1D but the output head); None: peft's default for the architecture (query and value
            projections), else every Linear but the last
    """
    if group_size < 2 or group_size % 2:
        raise LiandanError(f"adapter.group_size must be an even number ≥ 2, got {group_size}")

    def prepare(_model: nn.Module, found: list[tuple[str, nn.Module]]) -> None:
        bad = [(n, dims(m)[0]) for n, m in found if dims(m)[0] % group_size]
        if bad:
            raise LiandanError(f"adapter.group_size: {group_size} does not divide the input width of {bad[0][0]!r} "
                               f"({bad[0][1]}); QA-LoRA pools the input in groups of that size")

    return Adapter("qalora", targets, lambda name, layer: QALoraLinear(layer, r, alpha, dropout, group_size),
                   prepare=prepare, options={"r": r, "alpha": alpha, "group_size": group_size})
