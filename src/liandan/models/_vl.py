"""Pieces the image-text models (CLIP, BLIP) share."""

from __future__ import annotations

import math

import torch
from torch import nn


class ConvStem(nn.Module):
    """A convolutional stem in place of ViT's patchify convolution (Xiao et al. 2021, "Early
    convolutions help transformers see better"; ViT's "hybrid", Dosovitskiy et al. 2021 §3.1):
    per halving of the resolution a 3×3 convolution and a stride-2 3×3 convolution, each with
    batch norm and ReLU, down to the patch grid, then a 1×1 convolution to the transformer width.

    ``(B, C, H, W) -> (B, D, H/p, W/p)``, the shape the patch convolution returns. Tiny ViTs
    trained from scratch on a few thousand images learn shapes far faster with it: a patchify
    stem must learn edge detectors from a linear map of raw pixels.
    """

    def __init__(self, in_channels: int, dim: int, patch: int) -> None:
        super().__init__()
        n = int(math.log2(patch))
        if 2**n != patch:
            raise ValueError(f"a conv stem needs a power-of-two patch size, got {patch}")
        layers: list[nn.Module] = []
        c = in_channels
        for k in range(n):
            out = max(16, dim // 2 ** (n - 1 - k))  # widths double towards the transformer width
            layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(),
                       nn.Conv2d(out, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            c = out
        self.body = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c, dim, 1)

    @property
    def weight(self) -> torch.Tensor:
        """Hugging Face's vision embeddings read ``patch_embedding.weight.dtype``."""
        return self.proj.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.body(x))


def use_conv_stem(vision_model: nn.Module, in_channels: int, dim: int, patch: int) -> None:
    """Swap a Hugging Face ViT's patch embedding for a :class:`ConvStem` (same output grid)."""
    vision_model.embeddings.patch_embedding = ConvStem(in_channels, dim, patch)


def check_image_shape(name: str, input_shape: tuple[int, ...], patch: int | None = None) -> None:
    """Vision-language builders take square (C, H, W) images cut into whole patches."""
    if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
        raise ValueError(f"{name} takes square images (C, H, W), not {tuple(input_shape)}")
    if patch is not None and input_shape[1] % patch:
        raise ValueError(f"image {input_shape[1]}×{input_shape[2]} is not divisible into {patch}×{patch} patches")


def apply_stem(vision_model: nn.Module, stem: str, size: str, input_shape: tuple[int, ...], vision_config) -> None:
    """``conv`` (or ``auto`` at size tiny) swaps in the conv stem; base keeps ViT's patchify stem (the reference)."""
    if stem == "conv" or (stem == "auto" and size == "tiny"):
        use_conv_stem(vision_model, int(input_shape[0]), vision_config.hidden_size, vision_config.patch_size)
