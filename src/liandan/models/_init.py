"""Weight initialisation schemes (the notes' 初始化 section), applied after a model is built.

``zeros``/``constant`` reproduce the symmetry problem on purpose: every unit of a layer computes
the same function and gets the same gradient, so they never differentiate. Xavier (Glorot &
Bengio 2010) keeps activation variance constant for tanh/sigmoid; He/Kaiming (He et al. 2015)
doubles it to compensate for ReLU zeroing half the inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from liandan.errors import LiandanError
from liandan.recipe import INIT_SCHEMES


def _nonlinearity(model: nn.Module) -> str:
    """Best guess of the activation for He init gain: leaky_relu when present, else relu."""
    return "leaky_relu" if any(isinstance(m, nn.LeakyReLU) for m in model.modules()) else "relu"


@torch.no_grad()
def init_weights(model: nn.Module, scheme: str = "default", *, std: float = 0.01, value: float = 0.1) -> None:
    """Re-initialise every Linear/Conv weight with ``scheme``; biases are set to zero.

    Norm layers keep weight 1 / bias 0. ``default`` leaves PyTorch's own init untouched.
    """
    if scheme == "default":
        return
    if scheme not in INIT_SCHEMES:
        raise LiandanError(f"unknown init {scheme!r}; available: {', '.join(INIT_SCHEMES)}")
    act = _nonlinearity(model)
    for m in model.modules():
        if not isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)):
            continue
        w = m.weight
        match scheme:
            case "zeros":
                nn.init.zeros_(w)
            case "constant":
                nn.init.constant_(w, value)
            case "normal":
                nn.init.normal_(w, 0.0, std)
            case "uniform":
                nn.init.uniform_(w, -std, std)
            case "xavier_uniform":
                nn.init.xavier_uniform_(w)
            case "xavier_normal":
                nn.init.xavier_normal_(w)
            case "kaiming_uniform":
                nn.init.kaiming_uniform_(w, nonlinearity=act)
            case "kaiming_normal":
                nn.init.kaiming_normal_(w, nonlinearity=act)
            case "orthogonal":
                nn.init.orthogonal_(w)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
