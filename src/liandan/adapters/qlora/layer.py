"""QLoRA layers — Dettmers et al., "QLoRA: Efficient Finetuning of Quantized LLMs" (NeurIPS 2023).

``Y = X·doubleDequant(c₁, c₂, W^{NF4}) + s·X·L₁L₂`` (the paper's eq. 5, in our shapes:
``y = x W̃ᵀ + (α/r)·B A x``): the frozen base weight lives as 4-bit NF4 codes with blockwise absmax
constants (:mod:`liandan.adapters.qlora.nf4`) and is dequantised to float32 on every forward; the LoRA
update beside it is exactly :class:`~liandan.adapters.lora.layer.LoraLinear`'s (``A ∈ ℝ^{r×in}``
Kaiming-uniform, ``B ∈ ℝ^{out×r}`` zero). Gradients flow through the dequantised weight into the
adapter only — the codes are buffers, never trained.

What is saved is the quantised base: ``qweight`` (uint8, two codes a byte) and the absmax constants
(``absmax``, or ``absmax_q``/``absmax_scale``/``absmax_mean`` with double quantisation), all plain
tensors, so the state dict is safetensors-compatible and ≈ 0.516 (DQ) / 0.5625 byte per parameter
instead of 4. The paper's third ingredient, paged optimisers (NVIDIA unified memory paging optimiser
states to the CPU on memory spikes), is a CUDA feature with nothing to do on CPU.

**Merging** a QLoRA adapter gives a *float* layer ``W̃ + ΔW``: ΔW does not live on the NF4 grid, so
re-quantising the merged weight would add a second rounding error (peft re-quantises: max |Δlogit|
0.121 at int4 in reference/peft-compress-export.md §3). Keeping it float is exact but gives up the
4-bit size. QA-LoRA (:mod:`liandan.adapters.qalora`) removes this: its update folds into the INT4 zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from liandan.adapters.base import dims, is_conv1d, low_rank_pair
from liandan.adapters.qlora.nf4 import dequantize_nf4, quantize_nf4
from liandan.errors import LiandanError


def out_in_weight(layer: nn.Module) -> torch.Tensor:
    """The layer's weight as ``(out, in)`` (Conv1D stores ``(in, out)``)."""
    return layer.weight.T if is_conv1d(layer) else layer.weight


class QuantizedLinear(nn.Module):
    """A frozen quantised stand-in for a Linear or Hugging Face Conv1D (the ``base`` of QLoRA and
    QA-LoRA layers). Subclasses hold the codes as buffers and define :meth:`dequantize`; the bias
    stays the original (frozen, float) parameter. Forward computes in float32, as the original
    layer's own op (``F.linear``, or Conv1D's ``addmm`` on an ``(in, out)`` weight), so a float
    layer built from the same dequantised weight (:meth:`to_float`) gives the same bits."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.in_features, self.out_features = dims(layer)
        self.conv1d = is_conv1d(layer)
        self.float_cls = type(layer)  # what to_float rebuilds (a plain Python attribute, not state)
        self.float_dtype = layer.weight.dtype
        self.register_parameter("bias", layer.bias)  # the same frozen Parameter (or None)

    def dequantize(self) -> torch.Tensor:
        """The weight as float32 ``(out, in)``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.dequantize()
        xf = x.float()
        b = None if self.bias is None else self.bias.float()
        if self.conv1d:  # transformers' Conv1D.forward on the (in, out) layout
            y = torch.addmm(b, xf.view(-1, xf.size(-1)), w.T.contiguous()).view(*xf.shape[:-1], self.out_features)
        else:
            y = F.linear(xf, w, b)
        return y.to(x.dtype)

    @torch.no_grad()
    def to_float(self, delta: torch.Tensor | None = None) -> nn.Module:
        """A plain float layer of the original kind with weight ``dequantize() (+ delta)``, ``(out, in)``."""
        w = self.dequantize() if delta is None else self.dequantize() + delta.float()
        if self.conv1d:
            layer = self.float_cls(self.out_features, self.in_features)  # Conv1D(nf, nx)
            layer.weight = nn.Parameter(w.T.contiguous().to(self.float_dtype), requires_grad=False)
        else:
            layer = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
            layer.weight = nn.Parameter(w.to(self.float_dtype), requires_grad=False)
        if self.bias is not None:
            layer.bias = self.bias
        return layer

    def storage_bytes(self) -> int:
        """Bytes of the stored weight (codes and constants; the float bias not counted)."""
        return sum(b.numel() * b.element_size() for b in self.buffers(recurse=False))

    def bytes_per_param(self) -> float:
        return self.storage_bytes() / (self.in_features * self.out_features)


class NF4Linear(QuantizedLinear):
    """The frozen base stored as NF4 (block ``block``, optionally double-quantised)."""

    def __init__(self, layer: nn.Module, block: int = 64, double_quant: bool = True) -> None:
        super().__init__(layer)
        self.block, self.double_quant = block, double_quant
        for k, v in quantize_nf4(out_in_weight(layer), block, double_quant).items():
            self.register_buffer(k, v.reshape(1) if v.dim() == 0 else v)  # 0-d → (1,) for safetensors

    def dequantize(self) -> torch.Tensor:
        return dequantize_nf4(dict(self.named_buffers(recurse=False)), (self.out_features, self.in_features))

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, nf4 block={self.block}, "
                f"double_quant={self.double_quant}")


class QLoraLinear(nn.Module):
    """LoRA beside an NF4 base: ``y = x·W̃ᵀ + (α/r)·B A x``; ``merge`` puts a float ``W̃ + ΔW`` layer as base."""

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0, block: int = 64,
                 double_quant: bool = True) -> None:
        super().__init__()
        in_f, out_f = dims(base)
        dtype = base.weight.dtype
        self.base: nn.Module = NF4Linear(base, block, double_quant)
        self.r, self.alpha = r, alpha
        self.lora_A, self.lora_B = low_rank_pair(r, in_f, out_f, dtype)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    @property
    def scaling(self) -> float:
        return self.alpha / self.r

    def delta_weight(self) -> torch.Tensor:
        """``(α/r)·B A``, shaped ``(out, in)``."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # (..., out): dequantised NF4 weight, float32 compute
        if self.merged:
            return y
        z = self.dropout(x) @ self.lora_A.T  # (..., r)
        return y + (z @ self.lora_B.T) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Replace the NF4 base by a float layer ``W̃ + ΔW`` (exact; no longer 4-bit)."""
        if not self.merged:
            self.base = self.base.to_float(self.delta_weight())
            self.merged = True

    def unmerge(self) -> None:
        raise LiandanError("qlora: a merged QLoRA layer holds a float weight W̃ + ΔW; the NF4 base cannot be "
                           "recovered from it exactly (re-quantising adds a new rounding error). Keep the unmerged "
                           "model, or use qalora, whose merge stays INT4 and unmerges exactly")

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}"
