"""LeNet-5 (LeCun et al. 1998, "Gradient-based learning applied to document recognition").

The first successful CNN: 5×5 convolutions, subsampling (pooling), then fully connected layers.
This is the modern reading used by torchvision-era tutorials: C3 fully connected (2,416
parameters instead of the paper's 1,516) and a linear output instead of the RBF layer, so at
1×32×32 it has 61,706 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from liandan.models._layers import activation as make_activation
from liandan.registry import register_model


class LeNet5(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, input_hw: tuple[int, int], act: str, pad: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad), make_activation(act), nn.MaxPool2d(2),  # C1, S2
            nn.Conv2d(6, 16, 5, padding=pad), make_activation(act), nn.MaxPool2d(2),  # C3, S4
        )
        with torch.no_grad():  # infer the flattened size instead of hard-coding 16·5·5
            flat = self.features(torch.zeros(1, in_channels, *input_hw)).numel()
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, 120), make_activation(act),  # C5
            nn.Linear(120, 84), make_activation(act),  # F6
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.classifier(self.features(x))


@register_model("lenet5", ref_params=61_706, ref_gmacs=0.000417, ref_input=(1, 32, 32), ref_num_classes=10,
                paper="LeCun et al. 1998")
def lenet5(
    num_classes: int = 10,
    in_channels: int = 1,
    input_shape: tuple[int, ...] = (1, 32, 32),
    activation: str = "relu",
    small_input: bool | None = None,
) -> nn.Module:
    """LeNet-5 (1998): 5×5 convs + pooling + FC; pads its convs on inputs under 28×28.

    Args:
        input_shape: one sample's (C, H, W), inferred from the data; sizes the first fully connected layer
        activation: activation after each conv and hidden FC layer: relu, leaky_relu, elu, gelu, sigmoid,
            tanh, silu or identity (the paper used a scaled tanh)
        small_input: pad the 5×5 convs by 2 so small images keep a feature map; None: True when H or W < 28
            (e.g. 8×8 digits)
    """
    hw = tuple(input_shape[-2:])
    if small_input is None:
        small_input = min(hw) < 28
    # On 8×8 digits two unpadded 5×5 convs would shrink the map to nothing; padding 2 keeps it.
    return LeNet5(num_classes, in_channels, hw, activation, pad=2 if small_input else 0)
