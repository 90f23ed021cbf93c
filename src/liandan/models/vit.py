"""Vision Transformer (Dosovitskiy et al. 2021, "An image is worth 16x16 words").

The image is cut into non-overlapping p×p patches, each linearly embedded (a p×p convolution
with stride p), a class token is prepended, learned positions are added, and the transformer
encoder of :mod:`liandan.models.transformer` reads the tokens. ViT-B/16 at 224×224 with 1000
classes has 86,567,656 parameters (torchvision ``vit_b_16``): patch embedding 590,592, class
token 768, positions 197·768, 12 blocks of 12·768² + 13·768, final LayerNorm 1,536, head 769,000.

Sizes (dim, depth, heads): ``tiny`` is a CPU-sized model for 8×8–32×32 inputs (64, 4, 4), not
DeiT's ViT-Ti; ``small`` is ViT-S (384, 12, 6); ``base`` is ViT-B (768, 12, 12). ``auto`` picks
``base`` with 16×16 patches for images of 64 pixels and more, and ``tiny`` below, with a patch
that leaves at most 8×8 tokens (2 on 8×8 digits, 4 on 32×32).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from liandan.models.transformer import MoESpec, TransformerClassifier
from liandan.registry import register_model

SIZES: dict[str, tuple[int, int, int]] = {"tiny": (64, 4, 4), "small": (384, 12, 6), "base": (768, 12, 12)}


class PatchEmbed(nn.Module):
    """``(B, C, H, W)`` -> ``(B, N, D)`` with N = (H/p)·(W/p) patch tokens."""

    def __init__(self, in_channels: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, D, H/p, W/p) -> (B, N, D)


def auto_patch(hw: tuple[int, int]) -> int:
    return 16 if min(hw) >= 64 else max(2, min(hw) // 8)


@register_model("vit", ref_params=86_567_656, ref_gmacs=17.56, ref_input=(3, 224, 224),
                paper="Dosovitskiy et al. 2021")
def vit(
    num_classes: int = 1000,
    in_channels: int = 3,
    input_shape: tuple[int, ...] = (3, 224, 224),
    size: Literal["auto", "tiny", "small", "base"] = "auto",
    patch: int = 0,
    mlp_ratio: float = 4.0,
    dropout: float = 0.0,
    moe_experts: int = 0,
    moe_top_k: int = 1,
    capacity_factor: float = 1.25,
    aux_weight: float = 0.01,
) -> nn.Module:
    """Vision Transformer: patches + class token + transformer encoder (ViT-B/16 at 224: 86.6 M).

    Args:
        input_shape: one sample's (C, H, W), H and W divisible by the patch; inferred from the data
        size: (width, depth, heads): tiny (64, 4, 4) CPU-sized, small ViT-S (384, 12, 6), base ViT-B (768, 12,
            12); auto: base from 64 pixels up, else tiny
        patch: patch side in pixels; 0: 16 from 64 pixels up, else max(2, side // 8) (at most 8×8 tokens)
        mlp_ratio: hidden width of each block's FFN as a multiple of the model width (4 in Vaswani et al.
            2017)
        dropout: dropout probability on attention weights, residual branches and embeddings
        moe_experts: make each block's FFN a mixture of this many experts (Switch Transformer); 0: a dense FFN
        moe_top_k: experts each token is routed to when moe_experts > 0 (1: Switch; 2: GShard)
        capacity_factor: expert capacity ⌈capacity_factor · tokens · k / experts⌉ per forward in training;
            assignments beyond it are dropped (the token passes through the residual); ≤ 0: unlimited
        aux_weight: weight α of the Switch load-balancing loss added to the task loss (0.01 in Fedus et al.
            2021)
    """
    if len(input_shape) != 3:
        raise ValueError(f"vit takes image inputs (C, H, W), not {tuple(input_shape)}")
    hw = (int(input_shape[1]), int(input_shape[2]))
    if size == "auto":
        size = "base" if min(hw) >= 64 else "tiny"
    patch = patch or auto_patch(hw)
    if hw[0] % patch or hw[1] % patch:
        raise ValueError(f"image {hw[0]}×{hw[1]} is not divisible into {patch}×{patch} patches")
    dim, depth, heads = SIZES[size]
    tokens = (hw[0] // patch) * (hw[1] // patch)
    moe = MoESpec(moe_experts, moe_top_k, capacity_factor, aux_weight)
    return TransformerClassifier(PatchEmbed(in_channels, dim, patch), tokens, num_classes, dim, depth, heads,
                                 mlp_ratio, dropout, "cls", moe)
