"""LoRA (Hu et al. 2022): a trainable low-rank update beside each frozen target layer."""

from __future__ import annotations

from liandan.adapters.inject import Adapter
from liandan.adapters.lora.layer import LoraLinear
from liandan.registry import register_adapter


@register_adapter("lora")
def lora(r: int = 8, alpha: float = 16.0, dropout: float = 0.0, rslora: bool = False,
         targets: list[str] | None = None) -> Adapter:
    """Low-rank update (α/r)·BA beside each target layer (Hu et al. 2022); rslora: α/√r."""
    return Adapter("lora", targets, lambda name, layer: LoraLinear(layer, r, alpha, dropout, rslora))
