"""AlexNet (Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep
Convolutional Neural Networks").

The network that started the deep-learning era on ImageNet: a deep CNN trained on GPUs with
ReLU (instead of saturating tanh, ~6× faster to train), dropout in the large fully connected
layers, overlapping max-pooling and data augmentation. This is the single-tower variant of
Krizhevsky's "One weird trick" paper (2014) that torchvision implements (64/192/384/256/256
channels, no local response normalisation): 61,100,840 parameters at 1000 classes, 96 % of
them in the three fully connected layers.
"""

from __future__ import annotations

import torch
from torch import nn

from liandan.models._vision import IMAGENET, init_vision, small_input_for
from liandan.registry import register_model


class AlexNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, small: bool, dropout: float) -> None:
        super().__init__()
        if small:
            # 3×3 stride 1 instead of 11×11 stride 4 (which takes 32×32 to 7×7 in one layer);
            # the pools round up so an 8×8 input still ends at 1×1 rather than failing.
            stem: list[nn.Module] = [nn.Conv2d(in_channels, 64, 3, 1, 1), nn.ReLU(inplace=True),
                                     nn.MaxPool2d(3, 2, ceil_mode=True)]  # (64, 16, 16) at 32×32
        else:
            # 11×11 stride 4: 224 -> 55, then an overlapping 3×3/2 pool -> 27.
            stem = [nn.Conv2d(in_channels, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2)]
        self.features = nn.Sequential(
            *stem,
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True),  # (192, 27, 27)
            nn.MaxPool2d(3, 2, ceil_mode=small),  # (192, 13, 13)
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),  # (384, 13, 13)
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=small),  # (256, 6, 6)
        )
        # ImageNet: 6×6×256 = 9,216 features into 4096-wide layers. Small inputs end at 1×1 to
        # 7×7 maps; pooling to 6×6 would only replicate them, so pool globally and use 512-wide
        # hidden layers (as CIFAR variants do) instead of 58 M parameters of copies.
        pool, hidden = (1, 512) if small else (6, 4096)
        self.avgpool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * pool * pool, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register_model("alexnet", ref_params=61_100_840, ref_gmacs=0.714, ref_input=IMAGENET,
                paper="Krizhevsky et al. 2012")
def alexnet(
    num_classes: int = 1000,
    in_channels: int = 3,
    input_shape: tuple[int, ...] = IMAGENET,
    small_input: bool | None = None,
    dropout: float = 0.5,
) -> nn.Module:
    """AlexNet (2012): deep CNN with ReLU, dropout and overlapping pooling that won ImageNet 2012.

    Args:
        input_shape: one sample's (C, H, W), inferred from the data; only decides small_input when that is
            None
        small_input: True: a 3×3 stride-1 stem instead of 11×11 stride 4, and global pooling into 512-wide FC
            layers; None: True when H or W < 64 (CIFAR/MNIST-sized images)
        dropout: dropout probability before each hidden FC layer (0.5 in the paper)
    """
    model = AlexNet(num_classes, in_channels, small_input_for(small_input, input_shape, "alexnet"), dropout)
    init_vision(model)
    return model
