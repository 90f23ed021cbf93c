"""LoRA (Hu et al. 2022): a trainable low-rank update beside each frozen target layer."""

from __future__ import annotations

from liandan.adapters.inject import Adapter, Targets
from liandan.adapters.lora.layer import LoraLinear
from liandan.registry import register_adapter


@register_adapter("lora")
def lora(r: int = 8, alpha: float = 16.0, dropout: float = 0.0, rslora: bool = False,
         targets: Targets = None) -> Adapter:
    """Low-rank update (α/r)·BA beside each target layer (Hu et al. 2022); rslora: α/√r.

    Args:
        r: rank of the update B·A: r·(in + out) trainable numbers per layer
        alpha: scale numerator: the update is multiplied by alpha / r (alpha = 2r is a common choice)
        dropout: dropout probability on the adapter's input (0: none)
        rslora: scale by alpha / √r instead (rank-stabilised LoRA, Kalajdzievski 2023), so large ranks still
            learn
        targets: layers to adapt, matched as in peft (a module named t or ending in .t), or all-linear (every
            Linear/Conv1D but the output head); None: peft's default for the architecture (query and value
            projections), else every Linear but the last
    """
    return Adapter("lora", targets, lambda name, layer: LoraLinear(layer, r, alpha, dropout, rslora))
