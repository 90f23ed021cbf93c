"""A user's module outside liandan (the notes' FCNet), named by recipes as
``user_models_helper:FCNet`` once this directory is on sys.path."""

from __future__ import annotations

from torch import nn


class FCNet(nn.Module):
    """A plain fully-connected net: flatten, Linear-ReLU blocks, a Linear head.

    Args:
        input_size: features of one flattened sample (64 for the 8×8 digits)
        hidden: widths of the hidden layers
        num_classes: outputs of the head
    """

    def __init__(self, input_size: int = 64, hidden: list[int] | None = None, num_classes: int = 10) -> None:
        super().__init__()
        self.input_size, self.hidden, self.num_classes = input_size, list(hidden or [32, 16]), num_classes
        sizes = [input_size, *self.hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes, sizes[1:], strict=False):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], num_classes))

    def forward(self, x):
        return self.net(x)


class Opaque(nn.Module):
    """A module whose constructor arguments are not kept: the recipe cannot rebuild it."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))

    def forward(self, x):
        return self.net(x)
