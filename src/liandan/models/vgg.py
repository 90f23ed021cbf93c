"""VGG (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image
Recognition").

VGG showed that depth matters and that it can be had with one building block: stacks of 3×3
convolutions (two 3×3 layers see a 5×5 window with fewer parameters and an extra
non-linearity) separated by 2×2 max-pools, doubling the channels after every pool. VGG-16 has
138,357,544 parameters at 1000 classes and ~15.5 GMACs at 224×224. ``vgg16_bn`` adds batch
normalisation (Ioffe & Szegedy 2015) after each conv, which makes the deep plain stack easy to
train from scratch; every VGG here accepts ``norm`` to try other normalisations.
"""

from __future__ import annotations

import torch
from torch import nn

from liandan.models._layers import norm2d
from liandan.models._vision import IMAGENET, Norm, init_vision, small_input_for
from liandan.registry import register_model

# Channels per conv; "M" is a 2×2 max-pool. Names follow the paper's table 1 (A = 11 layers, D = 16).
CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, cfg: list[int | str], num_classes: int, in_channels: int, norm: Norm,
                 small: bool, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                # ceil_mode on small inputs: five pools take 8×8 to 1×1 instead of failing at 0×0.
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=small))
            else:
                # Conv bias is kept even before a norm: torchvision does, and parity counts it.
                layers += [nn.Conv2d(c, int(v), 3, padding=1), norm2d(norm, int(v)), nn.ReLU(inplace=True)]
                c = int(v)
        self.features = nn.Sequential(*[m for m in layers if not isinstance(m, nn.Identity)])
        # ImageNet: 224 / 2⁵ = 7, so 7×7×512 = 25,088 features into 4096-wide layers. Small inputs
        # end at 1×1: pooling that to 7×7 would feed 49 copies of each value to a 102 M
        # parameter layer, so pool globally with 512-wide hidden layers (the CIFAR VGG of
        # Zagoruyko 2015) instead.
        pool, hidden = (1, 512) if small else (7, 4096)
        self.avgpool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(
            nn.Linear(512 * pool * pool, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        x = self.avgpool(self.features(x))  # (B, 512, 7, 7) at 224
        return self.classifier(torch.flatten(x, 1))


def _vgg(cfg: str, name: str, num_classes: int, in_channels: int, input_shape: tuple[int, ...],
         small_input: bool | None, norm: Norm, dropout: float) -> nn.Module:
    small = small_input_for(small_input, input_shape, name)
    model = VGG(CONFIGS[cfg], num_classes, in_channels, norm, small, dropout)
    init_vision(model)
    return model


@register_model("vgg11", ref_params=132_863_336, ref_gmacs=7.609, ref_input=IMAGENET,
                paper="Simonyan & Zisserman 2015")
def vgg11(
    num_classes: int = 1000,
    in_channels: int = 3,
    input_shape: tuple[int, ...] = IMAGENET,
    small_input: bool | None = None,
    norm: Norm = "none",
    dropout: float = 0.5,
) -> nn.Module:
    """VGG-11 (2014): configuration A, 8 conv + 3 FC layers of stacked 3×3 convolutions.

    Args:
        input_shape: one sample's (C, H, W), inferred from the data; only decides small_input when that is
            None
        small_input: True: max-pools round up (8×8 still reaches 1×1) and the classifier pools globally into
            512-wide FC layers (Zagoruyko 2015's CIFAR VGG) instead of 7×7 into 4096; None: True when H or W <
            64 (CIFAR/MNIST-sized images)
        norm: normalisation after each conv: batch, layer (GroupNorm with one group), instance, group (up to
            32 groups) or none (the paper: none)
        dropout: dropout probability after each hidden FC layer (0.5 in the paper)
    """
    return _vgg("A", "vgg11", num_classes, in_channels, input_shape, small_input, norm, dropout)


@register_model("vgg16", ref_params=138_357_544, ref_gmacs=15.47, ref_input=IMAGENET,
                paper="Simonyan & Zisserman 2015")
def vgg16(
    num_classes: int = 1000,
    in_channels: int = 3,
    input_shape: tuple[int, ...] = IMAGENET,
    small_input: bool | None = None,
    norm: Norm = "none",
    dropout: float = 0.5,
) -> nn.Module:
    """VGG-16 (2014): configuration D, 13 conv + 3 FC layers; depth from stacked 3×3 convolutions.

    Args:
        input_shape: one sample's (C, H, W), inferred from the data; only decides small_input when that is
            None
        small_input: True: max-pools round up (8×8 still reaches 1×1) and the classifier pools globally into
            512-wide FC layers (Zagoruyko 2015's CIFAR VGG) instead of 7×7 into 4096; None: True when H or W <
            64 (CIFAR/MNIST-sized images)
        norm: normalisation after each conv: batch, layer (GroupNorm with one group), instance, group (up to
            32 groups) or none (the paper: none)
        dropout: dropout probability after each hidden FC layer (0.5 in the paper)
    """
    return _vgg("D", "vgg16", num_classes, in_channels, input_shape, small_input, norm, dropout)


@register_model("vgg16_bn", ref_params=138_365_992, ref_gmacs=15.47, ref_input=IMAGENET,
                paper="Simonyan & Zisserman 2015; Ioffe & Szegedy 2015")
def vgg16_bn(
    num_classes: int = 1000,
    in_channels: int = 3,
    input_shape: tuple[int, ...] = IMAGENET,
    small_input: bool | None = None,
    norm: Norm = "batch",
    dropout: float = 0.5,
) -> nn.Module:
    """VGG-16 with batch normalisation after every conv: trains from scratch without tricks.

    Args:
        input_shape: one sample's (C, H, W), inferred from the data; only decides small_input when that is
            None
        small_input: True: max-pools round up (8×8 still reaches 1×1) and the classifier pools globally into
            512-wide FC layers (Zagoruyko 2015's CIFAR VGG) instead of 7×7 into 4096; None: True when H or W <
            64 (CIFAR/MNIST-sized images)
        norm: normalisation after each conv: batch, layer (GroupNorm with one group), instance, group (up to
            32 groups) or none (Ioffe & Szegedy 2015's batch norm)
        dropout: dropout probability after each hidden FC layer (0.5 in the paper)
    """
    return _vgg("D", "vgg16_bn", num_classes, in_channels, input_shape, small_input, norm, dropout)
