"""DenseNet (Huang, Liu, van der Maaten & Weinberger 2017, "Densely Connected Convolutional
Networks").

Within a dense block every layer receives the concatenation of *all* earlier feature maps and
adds only ``growth_rate`` (32) new channels: features are reused instead of re-learned, every
layer gets a short path to the loss, and the network needs far fewer parameters than a ResNet
of similar accuracy (DenseNet-121: 7,978,856 parameters, ~2.8 GMACs). Layers are
pre-activation (norm → ReLU → conv, He et al. 2016 "Identity Mappings"), with a 1×1
bottleneck to 4·growth channels before each 3×3 conv; transition layers between blocks halve
the channels ("compression" 0.5) and the resolution.
"""

from __future__ import annotations

import torch
from torch import nn

from liandan.models._layers import norm2d
from liandan.models._vision import IMAGENET, Norm, init_vision, small_input_for
from liandan.registry import register_model


class DenseLayer(nn.Module):
    """norm-ReLU-conv1×1 (to bn_size·growth) → norm-ReLU-conv3×3 (to growth)."""

    def __init__(self, c_in: int, growth: int, bn_size: int, norm: Norm, drop_rate: float) -> None:
        super().__init__()
        bias = norm == "none"
        self.norm1 = norm2d(norm, c_in)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(c_in, bn_size * growth, 1, bias=bias)
        self.norm2 = norm2d(norm, bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=bias)
        self.drop = nn.Dropout(drop_rate)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:  # [(B, c_i, H, W)] -> (B, growth, H, W)
        x = torch.cat(features, 1)  # the dense connection: every earlier map, side by side
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.drop(self.conv2(self.relu2(self.norm2(x))))


class DenseBlock(nn.ModuleDict):
    def __init__(self, n: int, c_in: int, growth: int, bn_size: int, norm: Norm, drop_rate: float) -> None:
        super().__init__()
        for i in range(n):
            self[f"denselayer{i + 1}"] = DenseLayer(c_in + i * growth, growth, bn_size, norm, drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W) -> (B, c_in + n·growth, H, W)
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """norm-ReLU-conv1×1 halving the channels, then 2×2 average pool halving H and W."""

    def __init__(self, c_in: int, c_out: int, norm: Norm) -> None:
        super().__init__(
            norm2d(norm, c_in), nn.ReLU(inplace=True), nn.Conv2d(c_in, c_out, 1, bias=norm == "none"),
            # ceil_mode: an 8×8 input reaches the last transition at 2×2 -> 1×1, not 0×0.
            nn.AvgPool2d(2, 2, ceil_mode=True),
        )


class DenseNet(nn.Module):
    def __init__(self, blocks: tuple[int, ...], num_classes: int, in_channels: int, small: bool, norm: Norm,
                 growth: int = 32, init_features: int = 64, bn_size: int = 4, drop_rate: float = 0.0) -> None:
        super().__init__()
        bias = norm == "none"
        if small:
            stem: list[nn.Module] = [nn.Conv2d(in_channels, init_features, 3, 1, 1, bias=bias)]
        else:
            stem = [nn.Conv2d(in_channels, init_features, 7, 2, 3, bias=bias)]  # (64, 112, 112)
        stem += [norm2d(norm, init_features), nn.ReLU(inplace=True)]
        if not small:
            stem.append(nn.MaxPool2d(3, 2, 1))  # (64, 56, 56)
        layers: list[nn.Module] = stem
        c = init_features
        for i, n in enumerate(blocks):
            layers.append(DenseBlock(n, c, growth, bn_size, norm, drop_rate))  # block 1: (256, 56, 56)
            c += n * growth
            if i != len(blocks) - 1:
                layers.append(Transition(c, c // 2, norm))  # compression 0.5: (128, 28, 28)
                c //= 2
        layers.append(norm2d(norm, c))  # (1024, 7, 7): the last block's output is not yet normalised
        self.features = nn.Sequential(*layers)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        x = self.avgpool(self.relu(self.features(x)))
        return self.classifier(torch.flatten(x, 1))


@register_model("densenet121", ref_params=7_978_856, ref_gmacs=2.834, ref_input=IMAGENET,
                paper="Huang et al. 2017")
def densenet121(
    num_classes: int = 1000,
    in_channels: int = 3,
    input_shape: tuple[int, ...] = IMAGENET,
    small_input: bool | None = None,
    norm: Norm = "batch",
    growth_rate: int = 32,
    drop_rate: float = 0.0,
) -> nn.Module:
    """DenseNet-121 (2016): each layer sees all earlier feature maps concatenated; blocks [6, 12, 24, 16].

    Args:
        input_shape: one sample's (C, H, W), inferred from the data; only decides small_input when that is
            None
        small_input: True: a 3×3 stride-1 stem without the max-pool instead of the 7×7/2 conv + 3×3/2 pool, so
            small images are not shrunk 4× at once; None: True when H or W < 64 (CIFAR/MNIST-sized images)
        norm: normalisation after each conv: batch, layer (GroupNorm with one group), instance, group (up to
            32 groups) or none
        growth_rate: channels each dense layer adds (k = 32 in the paper)
        drop_rate: dropout probability after each dense layer (0 in the paper's ImageNet runs)
    """
    small = small_input_for(small_input, input_shape, "densenet121")
    model = DenseNet((6, 12, 24, 16), num_classes, in_channels, small, norm, growth_rate, drop_rate=drop_rate)
    init_vision(model, linear_std=None)
    return model
