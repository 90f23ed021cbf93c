"""Building blocks shared by the vision zoo (not a registered family: the leading underscore
keeps :mod:`liandan.models` from importing it as one).

Conventions every vision builder follows:
- ``input_shape`` is one sample's ``(C, H, W)``; it only decides ``small_input`` when that is
  ``None`` (auto: small when H or W < 64, i.e. CIFAR/MNIST/digits-sized images).
- A small-input model keeps the architecture but swaps the ImageNet stem (a 7×7 or 11×11
  stride-2+ conv and a max-pool that shrink 224 to 56 before any real work) for a 3×3
  stride-1 conv, so an 8×8 to 32×32 image is not reduced to 1×1 in the first two layers.
- ``norm`` picks the normalisation (:func:`liandan.models._layers.norm2d`). Convs feeding a
  norm have no bias (the norm's shift makes it redundant, as in torchvision); with
  ``norm="none"`` they get their bias back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from liandan.errors import LiandanError
from liandan.models._layers import norm2d

Norm = Literal["batch", "layer", "instance", "group", "none"]
Act = Callable[..., nn.Module]

IMAGENET = (3, 224, 224)
"""The reference input of the ImageNet architectures (parameter and MAC parity is checked here)."""


def small_input_for(small_input: bool | None, input_shape: tuple[int, ...], model: str) -> bool:
    """Resolve the ``small_input`` option: explicit value, else True when H or W < 64."""
    if len(input_shape) != 3:
        raise LiandanError(
            f"model {model!r} expects image inputs (C, H, W); got input_shape={tuple(input_shape)}"
        )
    if small_input is not None:
        return small_input
    return min(input_shape[1:]) < 64


def conv_norm_act(
    c_in: int, c_out: int, k: int, stride: int = 1, *, groups: int = 1, norm: Norm = "batch",
    act: Act | None = nn.ReLU, padding: int | None = None,
) -> nn.Sequential:
    """conv → norm → activation (torchvision's ``Conv2dNormActivation``); 'same' padding by default."""
    pad = (k - 1) // 2 if padding is None else padding
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, k, stride, pad, groups=groups, bias=norm == "none"),
        norm2d(norm, c_out),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10 %.

    From the TF MobileNet code (and torchvision's ``_make_divisible``): hardware kernels like
    channel counts that are multiples of 8, and width multipliers produce arbitrary floats.
    """
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018, "Squeeze-and-Excitation Networks").

    Global-average-pool each channel ("squeeze"), pass the vector through a two-layer bottleneck
    and rescale the channels by the result ("excite"): a cheap, input-dependent channel attention.
    The two layers are 1×1 convs with bias so parameter counts match torchvision.
    """

    def __init__(self, channels: int, squeeze: int, act: Act = nn.ReLU, gate: Act = nn.Sigmoid) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = act(inplace=True)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> same
        s = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class StochasticDepth(nn.Module):
    """Drop a whole residual branch per sample with probability ``p`` during training.

    Huang et al. 2016, "Deep Networks with Stochastic Depth": survivors are scaled by 1/(1-p)
    so the expected output is unchanged and evaluation needs no rescaling.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


@torch.no_grad()
def init_vision(model: nn.Module, *, linear_std: float | None = 0.01) -> None:
    """torchvision-style initialisation shared by the zoo.

    Convs: He normal with fan_out (He et al. 2015): keeps the gradient variance constant through
    ReLU layers, which matters for the 16+ layer plain nets (VGG) that have no norm to rescue
    them. Norm layers start as the identity (γ=1, β=0). Linear: N(0, 0.01) as in VGG/AlexNet;
    ``linear_std=None`` keeps PyTorch's default (torchvision's ResNet/DenseNet do that).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)
