"""QLoRA (Dettmers et al. 2023): LoRA over a frozen base stored as 4-bit NormalFloat, with blockwise
absmax scaling and double quantisation of the scaling constants; pure PyTorch (no bitsandbytes)."""

from __future__ import annotations

from torch import nn

from liandan.adapters.inject import Adapter, Targets
from liandan.adapters.qlora.layer import NF4Linear, QLoraLinear, QuantizedLinear
from liandan.errors import LiandanError
from liandan.registry import register_adapter

__all__ = ["NF4Linear", "QLoraLinear", "QuantizedLinear", "qlora"]


@register_adapter("qlora", tags=("quantized",))
def qlora(r: int = 8, alpha: float = 16.0, dropout: float = 0.0, block_size: int = 64, double_quant: bool = True,
          targets: Targets = None) -> Adapter:
    """LoRA (α/r)·BA over an NF4 4-bit base, blockwise absmax, double-quantised (Dettmers et al. 2023).

    Args:
        r: rank of the LoRA update B·A
        alpha: scale numerator: the update is multiplied by alpha / r (alpha = 2r is a common choice)
        dropout: dropout probability on the adapter's input (0: none)
        block_size: weights per absmax block of the NF4 base (even; 64 in the paper)
        double_quant: quantise the per-block absmax constants to 8 bits too (about 0.37 bits per weight saved)
        targets: layers to adapt, matched as in peft (a module named t or ending in .t), or all-linear (every
            Linear/Conv1D but the output head); None: peft's default for the architecture (query and value
            projections), else every Linear but the last
    """
    if block_size < 2 or block_size % 2:
        raise LiandanError(f"adapter.block_size must be an even number ≥ 2 (two 4-bit codes a byte), got {block_size}")

    def wrap(_name: str, layer: nn.Module) -> nn.Module:
        return QLoraLinear(layer, r, alpha, dropout, block_size, double_quant)

    return Adapter("qlora", targets, wrap,
                   options={"r": r, "alpha": alpha, "block_size": block_size, "double_quant": double_quant})
