"""GoogLeNet / Inception v1 (Szegedy et al. 2015, "Going Deeper with Convolutions").

The Inception module runs 1×1, 3×3 and 5×5 convolutions and a pool side by side and
concatenates them, so the network picks its receptive field per layer; 1×1 "bottleneck" convs
in front of the large kernels cut their cost (Network-in-Network, Lin et al. 2014). 22 layers
with 6.6 M parameters and ~1.5 GMACs: 12× fewer parameters than AlexNet. Like torchvision (and
its BN-Inception successor) every conv is followed by batch normalisation.

Auxiliary classifiers: the paper attaches two small classifier heads to intermediate layers
(after 4a and 4d) to push gradient into the lower layers; their losses are added with weight
0.3 in training and the heads are dropped at inference. With ``aux_logits=True`` they are
built (13,004,888 parameters at 1000 classes instead of 6,624,904) and, **in training mode
only**, ``forward`` still returns the main logits as one tensor (so the generic trainer works
unchanged) and stores ``(aux1, aux2)`` logits on ``model.aux_outputs`` for a loss that wants
them (``loss = ce(out) + 0.3 * (ce(aux1) + ce(aux2))``). In eval mode ``aux_outputs`` is None.
"""

from __future__ import annotations

import torch
from torch import nn

from liandan.models._vision import IMAGENET, Norm, conv_norm_act, init_vision, small_input_for
from liandan.registry import register_model


class Inception(nn.Module):
    """Four parallel branches concatenated along channels."""

    def __init__(self, c_in: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool_proj: int,
                 norm: Norm) -> None:
        super().__init__()
        self.branch1 = conv_norm_act(c_in, c1, 1, norm=norm)
        self.branch2 = nn.Sequential(
            conv_norm_act(c_in, c3r, 1, norm=norm), conv_norm_act(c3r, c3, 3, norm=norm))
        # The "5×5" branch is a 3×3 conv: a bug in the original port of the weights that
        # torchvision kept for compatibility; we keep it too so parameters and MACs match.
        self.branch3 = nn.Sequential(
            conv_norm_act(c_in, c5r, 1, norm=norm), conv_norm_act(c5r, c5, 3, norm=norm))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, 1, 1, ceil_mode=True), conv_norm_act(c_in, pool_proj, 1, norm=norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W) -> (B, c1+c3+c5+pool_proj, H, W)
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary head: 4×4 average pool, 1×1 conv to 128, FC 2048→1024, FC to classes."""

    def __init__(self, c_in: int, num_classes: int, norm: Norm) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.conv = conv_norm_act(c_in, 128, 1, norm=norm)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.drop = nn.Dropout(0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, 14, 14) -> (B, num_classes)
        x = torch.flatten(self.conv(self.pool(x)), 1)  # (B, 2048)
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, small: bool, norm: Norm,
                 aux_logits: bool, dropout: float) -> None:
        super().__init__()
        if small:
            # 3×3 stride 1 and no pools before the inception blocks: 32×32 enters 3a at 32×32.
            self.stem = nn.Sequential(
                conv_norm_act(in_channels, 64, 3, norm=norm),
                conv_norm_act(64, 64, 1, norm=norm),
                conv_norm_act(64, 192, 3, norm=norm),
            )
        else:
            self.stem = nn.Sequential(
                conv_norm_act(in_channels, 64, 7, 2, norm=norm),  # (64, 112, 112)
                nn.MaxPool2d(3, 2, ceil_mode=True),  # (64, 56, 56)
                conv_norm_act(64, 64, 1, norm=norm),
                conv_norm_act(64, 192, 3, norm=norm),  # (192, 56, 56)
                nn.MaxPool2d(3, 2, ceil_mode=True),  # (192, 28, 28)
            )
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32, norm)  # (256, 28, 28)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64, norm)  # (480, 28, 28)
        self.maxpool3 = nn.MaxPool2d(3, 2, ceil_mode=True)  # (480, 14, 14)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64, norm)  # (512, 14, 14)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64, norm)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64, norm)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64, norm)  # (528, 14, 14)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128, norm)  # (832, 14, 14)
        self.maxpool4 = nn.MaxPool2d(2, 2, ceil_mode=True)  # (832, 7, 7)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128, norm)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128, norm)  # (1024, 7, 7)
        self.aux1 = InceptionAux(512, num_classes, norm) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes, norm) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)
        self.aux_outputs: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        x = self.maxpool3(self.inception3b(self.inception3a(self.stem(x))))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        # Side channel instead of a tuple return: see the module docstring.
        self.aux_outputs = (aux1, aux2) if aux1 is not None and aux2 is not None else None
        return x

    def __getstate__(self) -> dict:
        # Non-leaf tensors cannot be deep-copied or pickled: drop the last step's aux logits so
        # copy.deepcopy (EMA, best-model snapshots) and torch.save work after a training step.
        state = self.__dict__.copy()
        state["aux_outputs"] = None
        return state


@register_model("googlenet", ref_params=6_624_904, ref_gmacs=1.498, ref_input=IMAGENET,
                ref_params_aux=13_004_888, paper="Szegedy et al. 2015")
def googlenet(
    num_classes: int = 1000,
    in_channels: int = 3,
    input_shape: tuple[int, ...] = IMAGENET,
    small_input: bool | None = None,
    norm: Norm = "batch",
    aux_logits: bool = False,
    dropout: float = 0.2,
) -> nn.Module:
    """GoogLeNet / Inception v1 (2014): parallel 1×1/3×3/5×5 branches with 1×1 bottlenecks.

    Args:
        input_shape: one sample's (C, H, W), inferred from the data; only decides small_input when that is
            None
        small_input: True: a 3×3 stride-1 stem with no pools before the inception blocks; None: True when H or
            W < 64 (CIFAR/MNIST-sized images)
        norm: normalisation after each conv: batch, layer (GroupNorm with one group), instance, group (up to
            32 groups) or none
        aux_logits: build the two auxiliary classifiers (after 4a and 4d); in training their logits land on
            model.aux_outputs for a loss that adds them (weight 0.3 in the paper)
        dropout: dropout probability before the classifier (0.4 in the paper, 0.2 in torchvision)
    """
    small = small_input_for(small_input, input_shape, "googlenet")
    model = GoogLeNet(num_classes, in_channels, small, norm, aux_logits, dropout)
    init_vision(model)
    return model
