"""ResNet (He, Zhang, Ren & Sun 2016, "Deep Residual Learning for Image Recognition").

Residual connections ``y = F(x) + x``: each block learns a correction to the identity instead of
a whole mapping, so gradients reach early layers through the shortcuts and networks of 50-150
layers train better than shallower ones (plain deep nets got *worse* with depth: the
degradation problem). ResNet-18/34 stack "basic" blocks of two 3×3 convs; ResNet-50 uses
"bottleneck" blocks (1×1 reduce, 3×3, 1×1 expand ×4) that make depth cheap.

``resnet50`` is torchvision's V1.5: the stride-2 of a downsampling bottleneck sits on the 3×3
conv, not the first 1×1 (which would simply skip 3/4 of the input positions); about +0.5 %
top-1 for 4.09 instead of 3.86 GMACs.

On small inputs (CIFAR-style, as in the paper's section 4.2) the 7×7/2 stem and max-pool become
one 3×3/1 conv, so a 32×32 image reaches the last stage at 4×4 instead of 1×1.
"""

from __future__ import annotations

import torch
from torch import nn

from liandan.models._layers import norm2d
from liandan.models._vision import IMAGENET, Norm, init_vision, small_input_for
from liandan.registry import register_model


def _conv(c_in: int, c_out: int, k: int, stride: int, norm: Norm) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, bias=norm == "none")


class BasicBlock(nn.Module):
    """Two 3×3 convs plus the shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int, norm: Norm) -> None:
        super().__init__()
        self.conv1 = _conv(c_in, planes, 3, stride, norm)
        self.bn1 = norm2d(norm, planes)
        self.conv2 = _conv(planes, planes, 3, 1, norm)
        self.bn2 = norm2d(norm, planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, planes, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W) -> (B, planes, H/s, W/s)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)  # add, then ReLU: the shortcut stays a pure identity


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (stride here: V1.5) → 1×1 expand to 4·planes, plus the shortcut (ResNet-50)."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int, norm: Norm) -> None:
        super().__init__()
        self.conv1 = _conv(c_in, planes, 1, 1, norm)
        self.bn1 = norm2d(norm, planes)
        self.conv2 = _conv(planes, planes, 3, stride, norm)
        self.bn2 = norm2d(norm, planes)
        self.conv3 = _conv(planes, planes * 4, 1, 1, norm)
        self.bn3 = norm2d(norm, planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, planes * 4, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W) -> (B, 4·planes, H/s, W/s)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _shortcut(c_in: int, c_out: int, stride: int, norm: Norm) -> nn.Module | None:
    """Identity when shapes match, else a strided 1×1 projection (the paper's option B)."""
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(_conv(c_in, c_out, 1, stride, norm), norm2d(norm, c_out))


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock | Bottleneck], layers: list[int], num_classes: int,
                 in_channels: int, small: bool, norm: Norm, width: int = 64) -> None:
        super().__init__()
        w = width  # 64 in the paper; narrower stems make the same topology affordable on a CPU
        if small:
            self.conv1 = _conv(in_channels, w, 3, 1, norm)  # (64, 32, 32) at 32×32
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, w, 7, 2, 3, bias=norm == "none")  # (64, 112, 112)
            self.maxpool = nn.MaxPool2d(3, 2, 1)  # (64, 56, 56)
        self.bn1 = norm2d(norm, w)
        self.relu = nn.ReLU(inplace=True)
        self.c = w
        self.layer1 = self._stage(block, w, layers[0], 1, norm)  # (64·e, 56, 56)
        self.layer2 = self._stage(block, 2 * w, layers[1], 2, norm)  # (128·e, 28, 28)
        self.layer3 = self._stage(block, 4 * w, layers[2], 2, norm)  # (256·e, 14, 14)
        self.layer4 = self._stage(block, 8 * w, layers[3], 2, norm)  # (512·e, 7, 7)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * w * block.expansion, num_classes)

    def _stage(self, block: type[BasicBlock | Bottleneck], planes: int, n: int, stride: int,
               norm: Norm) -> nn.Sequential:
        blocks = []
        for i in range(n):
            blocks.append(block(self.c, planes, stride if i == 0 else 1, norm))
            self.c = planes * block.expansion
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _resnet(block: type[BasicBlock | Bottleneck], layers: list[int], name: str, num_classes: int,
            in_channels: int, input_shape: tuple[int, ...], small_input: bool | None, norm: Norm,
            zero_init_residual: bool, width: int = 64) -> nn.Module:
    small = small_input_for(small_input, input_shape, name)
    model = ResNet(block, layers, num_classes, in_channels, small, norm, width)
    init_vision(model, linear_std=None)
    if zero_init_residual:
        # Goyal et al. 2017: γ=0 in each block's last norm makes every block start as the
        # identity, so a deep ResNet begins as a shallow one; helps large-batch training.
        for m in model.modules():
            last = m.bn3 if isinstance(m, Bottleneck) else m.bn2 if isinstance(m, BasicBlock) else None
            if isinstance(getattr(last, "weight", None), torch.Tensor):  # norm="none" has no γ
                with torch.no_grad():
                    last.weight.zero_()
    return model


@register_model("resnet18", ref_params=11_689_512, ref_gmacs=1.814, ref_input=IMAGENET,
                paper="He et al. 2016")
def resnet18(
    num_classes: int = 1000,
    in_channels: int = 3,
    input_shape: tuple[int, ...] = IMAGENET,
    small_input: bool | None = None,
    norm: Norm = "batch",
    zero_init_residual: bool = False,
    width: int = 64,
) -> nn.Module:
    """ResNet-18 (2015): residual shortcuts y = F(x) + x, basic blocks [2, 2, 2, 2].

    Args:
        input_shape: one sample's (C, H, W), inferred from the data; only decides small_input when that is
            None
        small_input: True: a 3×3 stride-1 stem without the max-pool instead of the 7×7/2 conv + 3×3/2 pool
            (the paper's CIFAR setup, §4.2), so small images are not shrunk 4× at once; None: True when H or W
            < 64 (CIFAR/MNIST-sized images)
        norm: normalisation after each conv: batch, layer (GroupNorm with one group), instance, group (up to
            32 groups) or none
        zero_init_residual: start each block's last norm scale γ at 0, so every block begins as the identity
            (Goyal et al. 2017; helps large-batch training)
        width: channels of the first stage (64 in the paper), doubled at each later stage; narrower is cheaper
    """
    return _resnet(BasicBlock, [2, 2, 2, 2], "resnet18", num_classes, in_channels, input_shape,
                   small_input, norm, zero_init_residual, width)


@register_model("resnet34", ref_params=21_797_672, ref_gmacs=3.664, ref_input=IMAGENET,
                paper="He et al. 2016")
def resnet34(
    num_classes: int = 1000,
    in_channels: int = 3,
    input_shape: tuple[int, ...] = IMAGENET,
    small_input: bool | None = None,
    norm: Norm = "batch",
    zero_init_residual: bool = False,
    width: int = 64,
) -> nn.Module:
    """ResNet-34 (2015): residual shortcuts y = F(x) + x, basic blocks [3, 4, 6, 3].

    Args:
        input_shape: one sample's (C, H, W), inferred from the data; only decides small_input when that is
            None
        small_input: True: a 3×3 stride-1 stem without the max-pool instead of the 7×7/2 conv + 3×3/2 pool
            (the paper's CIFAR setup, §4.2), so small images are not shrunk 4× at once; None: True when H or W
            < 64 (CIFAR/MNIST-sized images)
        norm: normalisation after each conv: batch, layer (GroupNorm with one group), instance, group (up to
            32 groups) or none
        zero_init_residual: start each block's last norm scale γ at 0, so every block begins as the identity
            (Goyal et al. 2017; helps large-batch training)
        width: channels of the first stage (64 in the paper), doubled at each later stage; narrower is cheaper
    """
    return _resnet(BasicBlock, [3, 4, 6, 3], "resnet34", num_classes, in_channels, input_shape,
                   small_input, norm, zero_init_residual, width)


@register_model("resnet50", ref_params=25_557_032, ref_gmacs=4.089, ref_input=IMAGENET,
                paper="He et al. 2016")
def resnet50(
    num_classes: int = 1000,
    in_channels: int = 3,
    input_shape: tuple[int, ...] = IMAGENET,
    small_input: bool | None = None,
    norm: Norm = "batch",
    zero_init_residual: bool = False,
    width: int = 64,
) -> nn.Module:
    """ResNet-50 V1.5 (2015): bottleneck blocks [3, 4, 6, 3], stride on the 3×3 conv.

    Args:
        input_shape: one sample's (C, H, W), inferred from the data; only decides small_input when that is
            None
        small_input: True: a 3×3 stride-1 stem without the max-pool instead of the 7×7/2 conv + 3×3/2 pool
            (the paper's CIFAR setup, §4.2), so small images are not shrunk 4× at once; None: True when H or W
            < 64 (CIFAR/MNIST-sized images)
        norm: normalisation after each conv: batch, layer (GroupNorm with one group), instance, group (up to
            32 groups) or none
        zero_init_residual: start each block's last norm scale γ at 0, so every block begins as the identity
            (Goyal et al. 2017; helps large-batch training)
        width: channels of the first stage (64 in the paper), doubled at each later stage; narrower is cheaper
    """
    return _resnet(Bottleneck, [3, 4, 6, 3], "resnet50", num_classes, in_channels, input_shape,
                   small_input, norm, zero_init_residual, width)
