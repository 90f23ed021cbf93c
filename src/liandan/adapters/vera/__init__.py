"""VeRA (Kopiczko et al. 2024): shared frozen random matrices, trainable scaling vectors per layer."""

from __future__ import annotations

import torch
from torch import nn

from liandan.adapters.base import dims
from liandan.adapters.inject import Adapter, Targets
from liandan.adapters.vera.layer import VeraLinear, kaiming_uniform
from liandan.registry import register_adapter


@register_adapter("vera")
def vera(r: int = 256, d_initial: float = 0.1, dropout: float = 0.0, seed: int = 0,
         targets: Targets = None) -> Adapter:
    """Frozen shared random A, B; trainable vectors d, b: ΔW = Λ_b B Λ_d A (Kopiczko et al. 2024).

    Args:
        r: rank of the frozen shared random matrices A and B (far larger than LoRA's, e.g. 256)
        d_initial: initial value of the trainable scaling vector d (b starts at 0, so training starts at the
            base)
        dropout: dropout probability on the adapter's input (0: none)
        seed: random seed of the shared A and B
        targets: layers to adapt, matched as in peft (a module named t or ending in .t), or all-linear (every
            Linear/Conv1D but the output head); None: peft's default for the architecture (query and value
            projections), else every Linear but the last
    """
    shared: dict[str, torch.Tensor] = {}

    def prepare(_model: nn.Module, found: list[tuple[str, nn.Module]]) -> None:
        # one pair for the whole model, big enough for its largest layer (the paper's "shared")
        max_in = max(dims(m)[0] for _, m in found)
        max_out = max(dims(m)[1] for _, m in found)
        gen = torch.Generator().manual_seed(seed)
        shared["A"] = kaiming_uniform((r, max_in), gen)
        shared["B"] = kaiming_uniform((max_out, r), gen)

    def wrap(_name: str, layer: nn.Module) -> nn.Module:
        return VeraLinear(layer, shared["A"].to(layer.weight.dtype), shared["B"].to(layer.weight.dtype),
                          d_initial, dropout)

    return Adapter("vera", targets, wrap, prepare=prepare)
