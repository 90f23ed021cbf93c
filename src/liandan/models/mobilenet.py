"""MobileNets: V1 (Howard et al. 2017), V2 (Sandler et al. 2018), V3 (Howard et al. 2019).

All three are built from **depthwise separable convolutions**: a k×k depthwise conv (one filter
per channel, ``groups=C``) followed by a 1×1 pointwise conv that mixes channels. A standard
k×k conv costs H·W·C_in·C_out·k² MACs; the separable pair costs H·W·C_in·(k² + C_out), about
8-9× less for k=3 at a small accuracy loss.

- V1 "MobileNets: Efficient CNNs for Mobile Vision Applications": 13 separable blocks, plus
  the width multiplier α that thins every layer (cost ∝ α²).
- V2 "MobileNetV2: Inverted Residuals and Linear Bottlenecks": blocks expand a thin tensor
  ×6 with a 1×1, filter it depthwise and project it back *without* an activation (ReLU would
  destroy information in the low-dimensional bottleneck); shortcuts join the thin ends.
- V3 "Searching for MobileNetV3": V2 blocks found by NAS, plus squeeze-and-excitation
  (Hu et al. 2018) and the cheap h-swish activation x·ReLU6(x+3)/6 in the deeper layers.

Small inputs get a stride-1 stem, so a 32×32 image ends at 2×2 instead of 1×1.
"""

from __future__ import annotations

import torch
from torch import nn

from liandan.models._vision import (
    IMAGENET,
    Act,
    Norm,
    SqueezeExcite,
    conv_norm_act,
    init_vision,
    make_divisible,
    small_input_for,
)
from liandan.registry import register_model

# ---------------------------------------------------------------- V1


class MobileNetV1(nn.Module):
    # (out_channels, stride) of each depthwise separable block, the paper's table 1.
    CFG = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
           (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]

    def __init__(self, num_classes: int, in_channels: int, small: bool, norm: Norm,
                 width_mult: float) -> None:
        super().__init__()
        c = make_divisible(32 * width_mult)
        layers: list[nn.Module] = [
            conv_norm_act(in_channels, c, 3, 1 if small else 2, norm=norm)  # (32, 112, 112)
        ]
        for out, s in self.CFG:
            out = make_divisible(out * width_mult)
            layers.append(nn.Sequential(
                conv_norm_act(c, c, 3, s, groups=c, norm=norm),  # depthwise: filters each channel alone
                conv_norm_act(c, out, 1, norm=norm),  # pointwise: mixes channels
            ))
            c = out
        self.features = nn.Sequential(*layers)  # (1024, 7, 7)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model("mobilenet_v1", ref_params=4_231_976, ref_gmacs=0.569, ref_input=IMAGENET,
                paper="Howard et al. 2017")
def mobilenet_v1(
    num_classes: int = 1000,
    in_channels: int = 3,
    input_shape: tuple[int, ...] = IMAGENET,
    small_input: bool | None = None,
    norm: Norm = "batch",
    width_mult: float = 1.0,
) -> nn.Module:
    """MobileNet V1 (2017): depthwise separable convolutions and a width multiplier.

    Args:
        input_shape: one sample's (C, H, W), inferred from the data; only decides small_input when that is
            None
        small_input: True: the 3×3 stem conv at stride 1 instead of 2, so small images keep their resolution;
            None: True when H or W < 64 (CIFAR/MNIST-sized images)
        norm: normalisation after each conv: batch, layer (GroupNorm with one group), instance, group (up to
            32 groups) or none
        width_mult: width multiplier α scaling every layer's channels (rounded to multiples of 8); 1.0: the
            paper's
    """
    small = small_input_for(small_input, input_shape, "mobilenet_v1")
    model = MobileNetV1(num_classes, in_channels, small, norm, width_mult)
    init_vision(model)
    return model


# ---------------------------------------------------------------- V2 and V3 blocks


class InvertedResidual(nn.Module):
    """expand 1×1 (skipped when t=1) → depthwise k×k → [SE] → project 1×1 with no activation."""

    def __init__(self, c_in: int, hidden: int, c_out: int, k: int, stride: int, norm: Norm,
                 act: Act, se: int | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if hidden != c_in:
            layers.append(conv_norm_act(c_in, hidden, 1, norm=norm, act=act))  # (hidden, H, W)
        layers.append(conv_norm_act(hidden, hidden, k, stride, groups=hidden, norm=norm, act=act))
        if se is not None:
            layers.append(SqueezeExcite(hidden, se, nn.ReLU, nn.Hardsigmoid))
        layers.append(conv_norm_act(hidden, c_out, 1, norm=norm, act=None))  # linear bottleneck
        self.block = nn.Sequential(*layers)
        self.use_res = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W) -> (B, c_out, H/s, W/s)
        out = self.block(x)
        return out + x if self.use_res else out


# ---------------------------------------------------------------- V2


class MobileNetV2(nn.Module):
    # (expansion t, channels c, repeats n, first stride s): the paper's table 2.
    CFG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
           (6, 320, 1, 1)]

    def __init__(self, num_classes: int, in_channels: int, small: bool, norm: Norm, width_mult: float,
                 dropout: float) -> None:
        super().__init__()
        act = nn.ReLU6  # clipped at 6 for robustness under low-precision inference (paper §3)
        c = make_divisible(32 * width_mult)
        last = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [conv_norm_act(in_channels, c, 3, 1 if small else 2, norm=norm, act=act)]
        for t, ch, n, s in self.CFG:
            out = make_divisible(ch * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(c, round(c * t), out, 3, s if i == 0 else 1, norm, act))
                c = out
        layers.append(conv_norm_act(c, last, 1, norm=norm, act=act))  # (1280, 7, 7)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model("mobilenet_v2", ref_params=3_504_872, ref_gmacs=0.301, ref_input=IMAGENET,
                paper="Sandler et al. 2018")
def mobilenet_v2(
    num_classes: int = 1000,
    in_channels: int = 3,
    input_shape: tuple[int, ...] = IMAGENET,
    small_input: bool | None = None,
    norm: Norm = "batch",
    width_mult: float = 1.0,
    dropout: float = 0.2,
) -> nn.Module:
    """MobileNetV2 (2018): inverted residuals with linear bottlenecks.

    Args:
        input_shape: one sample's (C, H, W), inferred from the data; only decides small_input when that is
            None
        small_input: True: the 3×3 stem conv at stride 1 instead of 2, so small images keep their resolution;
            None: True when H or W < 64 (CIFAR/MNIST-sized images)
        norm: normalisation after each conv: batch, layer (GroupNorm with one group), instance, group (up to
            32 groups) or none
        width_mult: width multiplier α scaling every layer's channels (rounded to multiples of 8); 1.0: the
            paper's
        dropout: dropout probability before the classifier
    """
    small = small_input_for(small_input, input_shape, "mobilenet_v2")
    model = MobileNetV2(num_classes, in_channels, small, norm, width_mult, dropout)
    init_vision(model)
    return model


# ---------------------------------------------------------------- V3


class MobileNetV3(nn.Module):
    # (kernel, expanded, out, squeeze-excite, h-swish, stride): the paper's table 1 (Large).
    CFG = [(3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
           (5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
           (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1), (3, 184, 80, False, True, 1),
           (3, 184, 80, False, True, 1), (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
           (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1), (5, 960, 160, True, True, 1)]

    def __init__(self, num_classes: int, in_channels: int, small: bool, norm: Norm, width_mult: float,
                 dropout: float) -> None:
        super().__init__()
        def ch(v: int) -> int:  # the width multiplier, rounded to multiples of 8
            return make_divisible(v * width_mult)

        c = ch(16)
        layers: list[nn.Module] = [
            conv_norm_act(in_channels, c, 3, 1 if small else 2, norm=norm, act=nn.Hardswish)  # (16, 112, 112)
        ]
        for k, exp, out, se, hs, s in self.CFG:
            exp, out = ch(exp), ch(out)
            act: Act = nn.Hardswish if hs else nn.ReLU
            # SE squeezes to a quarter of the expanded width (rounded to a multiple of 8).
            squeeze = make_divisible(exp // 4) if se else None
            layers.append(InvertedResidual(c, exp, out, k, s, norm, act, squeeze))
            c = out
        last_conv = 6 * c  # 960
        layers.append(conv_norm_act(c, last_conv, 1, norm=norm, act=nn.Hardswish))  # (960, 7, 7)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        hidden = ch(1280)
        # The head works on the pooled 1×1 vector, so its 1280-wide layer is cheap (§5.3).
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, hidden), nn.Hardswish(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model("mobilenet_v3_large", ref_params=5_483_032, ref_gmacs=0.217, ref_input=IMAGENET,
                paper="Howard et al. 2019")
def mobilenet_v3_large(
    num_classes: int = 1000,
    in_channels: int = 3,
    input_shape: tuple[int, ...] = IMAGENET,
    small_input: bool | None = None,
    norm: Norm = "batch",
    width_mult: float = 1.0,
    dropout: float = 0.2,
) -> nn.Module:
    """MobileNetV3-Large (2019): NAS-found inverted residuals with squeeze-excite and h-swish.

    Args:
        input_shape: one sample's (C, H, W), inferred from the data; only decides small_input when that is
            None
        small_input: True: the 3×3 stem conv at stride 1 instead of 2, so small images keep their resolution;
            None: True when H or W < 64 (CIFAR/MNIST-sized images)
        norm: normalisation after each conv: batch, layer (GroupNorm with one group), instance, group (up to
            32 groups) or none
        width_mult: width multiplier α scaling every layer's channels (rounded to multiples of 8); 1.0: the
            paper's
        dropout: dropout probability in the classifier head, before its last Linear
    """
    small = small_input_for(small_input, input_shape, "mobilenet_v3_large")
    model = MobileNetV3(num_classes, in_channels, small, norm, width_mult, dropout)
    init_vision(model)
    return model
