"""EfficientNet (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks").

Two ideas. (1) A baseline found by neural architecture search (MnasNet-style): MBConv blocks,
i.e. MobileNetV2 inverted residuals with squeeze-and-excitation and the SiLU/swish activation
x·σ(x). (2) **Compound scaling**: instead of growing only depth, width or resolution, grow all
three together by fixed ratios (d = 1.2^φ, w = 1.1^φ, r = 1.15^φ), which gives B1-B7 from this
B0 (5,288,548 parameters, ~0.39 GMACs at 224). Stochastic depth (Huang et al. 2016) drops
residual branches with a probability rising linearly to 0.2 in the last block.
"""

from __future__ import annotations

import torch
from torch import nn

from liandan.models._vision import (
    IMAGENET,
    Norm,
    SqueezeExcite,
    StochasticDepth,
    conv_norm_act,
    init_vision,
    make_divisible,
    small_input_for,
)
from liandan.registry import register_model

# (expand ratio, kernel, first stride, in, out, repeats): the B0 stages, the paper's table 1.
B0 = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
      (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]


class MBConv(nn.Module):
    """expand 1×1 → depthwise k×k → SE → project 1×1 (linear), residual with stochastic depth."""

    def __init__(self, c_in: int, expand: int, c_out: int, k: int, stride: int, norm: Norm,
                 drop: float) -> None:
        super().__init__()
        hidden = make_divisible(c_in * expand)
        layers: list[nn.Module] = []
        if hidden != c_in:
            layers.append(conv_norm_act(c_in, hidden, 1, norm=norm, act=nn.SiLU))  # (hidden, H, W)
        layers += [
            # depthwise: (hidden, H/s, W/s)
            conv_norm_act(hidden, hidden, k, stride, groups=hidden, norm=norm, act=nn.SiLU),
            # Unlike MobileNetV3 the squeeze width is a quarter of the block *input*, not of hidden.
            SqueezeExcite(hidden, max(1, c_in // 4), nn.SiLU, nn.Sigmoid),
            conv_norm_act(hidden, c_out, 1, norm=norm, act=None),  # (c_out, H/s, W/s)
        ]
        self.block = nn.Sequential(*layers)
        self.use_res = stride == 1 and c_in == c_out
        self.stochastic_depth = StochasticDepth(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return self.stochastic_depth(out) + x if self.use_res else out


class EfficientNet(nn.Module):
    def __init__(self, stages: list[tuple[int, ...]], num_classes: int, in_channels: int, small: bool,
                 norm: Norm, dropout: float, stochastic_depth: float) -> None:
        super().__init__()
        stem_stride = 1 if small else 2
        layers: list[nn.Module] = [  # (32, 112, 112)
            conv_norm_act(in_channels, stages[0][3], 3, stem_stride, norm=norm, act=nn.SiLU)
        ]
        total = sum(s[5] for s in stages)
        i = 0
        for expand, k, stride, c_in, c_out, n in stages:
            stage = []
            for j in range(n):
                # Deeper blocks are dropped more often: p grows linearly from 0 to stochastic_depth.
                p = stochastic_depth * i / total
                c, s = (c_in, stride) if j == 0 else (c_out, 1)  # the first block of a stage resizes
                stage.append(MBConv(c, expand, c_out, k, s, norm, p))
                i += 1
            layers.append(nn.Sequential(*stage))
        last_in = stages[-1][4]
        layers.append(conv_norm_act(last_in, 4 * last_in, 1, norm=norm, act=nn.SiLU))  # (1280, 7, 7)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * last_in, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model("efficientnet_b0", ref_params=5_288_548, ref_gmacs=0.386, ref_input=IMAGENET,
                paper="Tan & Le 2019")
def efficientnet_b0(
    num_classes: int = 1000,
    in_channels: int = 3,
    input_shape: tuple[int, ...] = IMAGENET,
    small_input: bool | None = None,
    norm: Norm = "batch",
    dropout: float = 0.2,
    stochastic_depth: float = 0.2,
) -> nn.Module:
    """EfficientNet-B0 (2019): NAS-found MBConv + squeeze-excite + SiLU, base of compound scaling.

    Args:
        input_shape: one sample's (C, H, W), inferred from the data; only decides small_input when that is
            None
        small_input: True: the 3×3 stem conv at stride 1 instead of 2, so small images keep their resolution;
            None: True when H or W < 64 (CIFAR/MNIST-sized images)
        norm: normalisation after each conv: batch, layer (GroupNorm with one group), instance, group (up to
            32 groups) or none
        dropout: dropout probability before the classifier (0.2 for B0)
        stochastic_depth: probability of dropping the deepest residual block, growing linearly from 0 at the
            first (Huang et al. 2016; 0.2 in the paper)
    """
    small = small_input_for(small_input, input_shape, "efficientnet_b0")
    model = EfficientNet(B0, num_classes, in_channels, small, norm, dropout, stochastic_depth)
    init_vision(model)
    return model
