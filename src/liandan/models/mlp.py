"""Fully connected networks: the FCNet of the notes (nn.Sequential of Linear → norm → activation → dropout)."""

from __future__ import annotations

import math
from typing import Literal

from torch import nn

from liandan.models._layers import activation as make_activation
from liandan.models._layers import norm1d
from liandan.registry import register_model


@register_model("mlp")
def mlp(
    num_classes: int,
    input_shape: tuple[int, ...],
    hidden: list[int] = [128, 64],  # noqa: B006 (read-only default, shown in help)
    activation: Literal["relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh", "silu"] = "relu",
    dropout: float = 0.0,
    norm: Literal["none", "batch", "layer", "instance", "group"] = "none",
) -> nn.Module:
    """Multi-layer perceptron: flatten, then Linear→norm→activation→dropout per hidden size.

    Args:
        input_shape: one sample's shape, inferred from the data; flattened to prod(input_shape) inputs
        hidden: widths of the hidden layers, in order; [] is a linear model
        activation: activation after each hidden layer
        dropout: dropout probability after each hidden activation; 0: none
        norm: normalisation after each hidden Linear: batch, layer (instance: LayerNorm too, a feature vector
            has no spatial axis), group or none
    """
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, h), norm1d(norm, h), make_activation(activation)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*[m for m in layers if not isinstance(m, nn.Identity)])
