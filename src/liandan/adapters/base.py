"""What every adapter layer shares: the wrapped layer's weight seen as ``(out, in)``.

torch's ``nn.Linear`` stores ``(out, in)``; Hugging Face's GPT-2 ``Conv1D`` stores ``(in, out)``
and computes ``x @ W + b`` (peft calls this ``fan_in_fan_out``). Adapters compute a low-rank
``ΔW`` in ``(out, in)`` form and merge it through :func:`add_to_weight`.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def is_conv1d(layer: nn.Module) -> bool:
    """Hugging Face ``transformers.pytorch_utils.Conv1D`` (checked by name: no import needed)."""
    return type(layer).__name__ == "Conv1D" and hasattr(layer, "nf")


def adaptable(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Linear) or is_conv1d(layer)


def dims(layer: nn.Module) -> tuple[int, int]:
    """``(in_features, out_features)`` of a Linear or Conv1D."""
    w = layer.weight
    return (w.shape[0], w.shape[1]) if is_conv1d(layer) else (w.shape[1], w.shape[0])


@torch.no_grad()
def add_to_weight(layer: nn.Module, delta: torch.Tensor) -> None:
    """``W += ΔW`` with ``delta`` shaped ``(out, in)``, in the layer's own layout."""
    w = layer.weight
    w.add_((delta.T if is_conv1d(layer) else delta).to(w.dtype))


@torch.no_grad()
def set_merged(layer: nn.Module, merged: bool) -> None:
    """Fold an adapter layer's ``delta_weight()`` into its base weight (or take it back out)."""
    if layer.merged != merged:
        delta = layer.delta_weight()
        add_to_weight(layer.base, delta if merged else -delta)
        layer.merged = merged


def low_rank_pair(r: int, in_f: int, out_f: int, dtype: torch.dtype) -> tuple[nn.Parameter, nn.Parameter]:
    """LoRA's ``A`` (r, in), Kaiming-uniform with a = √5 (as ``nn.Linear`` and peft), and ``B``
    (out, r), zero: the update BA starts at exactly 0, so training starts from the base model."""
    a = nn.Parameter(torch.empty(r, in_f, dtype=dtype))
    nn.init.kaiming_uniform_(a, a=math.sqrt(5))
    return a, nn.Parameter(torch.zeros(out_f, r, dtype=dtype))

