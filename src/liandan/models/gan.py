"""DCGAN (Radford, Metz & Chintala 2016): a generator and a discriminator in one module.

The pair is one ``nn.Module`` so a run saves, loads and exports it as one set of weights; the
``gan`` task (:mod:`liandan.training.tasks.generative`) gives each half its own optimizer.

Architecture guidelines of the paper (§3), kept here:
- no pooling: the generator upsamples with strided transposed convolutions, the discriminator
  downsamples with strided convolutions;
- batch normalisation in both networks, except the generator's output layer and the
  discriminator's input layer (normalising there made samples oscillate in the paper);
- ReLU in the generator with Tanh at the output (images live in [-1, 1]); LeakyReLU (slope 0.2)
  in the discriminator;
- weights from N(0, 0.02) (BatchNorm scales from N(1, 0.02)).

Sizes: images of ``size`` × ``size`` with ``size`` a power of two ≥ 8. The generator projects z
to a 2×2 map and doubles the resolution ``log2(size) − 1`` times; the discriminator mirrors it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from liandan.registry import register_model


def _stages(size: int) -> int:
    """How many ×2 up-samplings take a 2×2 map to ``size`` × ``size``."""
    n = math.log2(size) if size > 0 else -1
    if n != int(n) or size < 8:
        raise ValueError(f"dcgan needs square images whose side is a power of two >= 8, got {size}")
    return int(n) - 1


class Generator(nn.Module):
    """z (B, nz) → image (B, C, size, size) in [-1, 1]."""

    def __init__(self, nz: int, channels: int, size: int, width: int) -> None:
        super().__init__()
        n = _stages(size)
        chans = [width * 2 ** (n - 1 - i) for i in range(n)]  # e.g. size 8: [128, 64]
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, chans[0], 2, 1, 0, bias=False),  # (B, c0, 2, 2)
                                   nn.BatchNorm2d(chans[0]), nn.ReLU(True)]
        for a, b in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(chans[-1], channels, 4, 2, 1), nn.Tanh()]  # (B, C, size, size)
        self.net = nn.Sequential(*layers)
        self.nz = nz

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """image (B, C, size, size) → one real/fake logit per image (B,)."""

    def __init__(self, channels: int, size: int, width: int) -> None:
        super().__init__()
        n = _stages(size)
        chans = [width * 2**i for i in range(n)]  # e.g. size 8: [64, 128]
        layers: list[nn.Module] = [nn.Conv2d(channels, chans[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for a, b in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(chans[-1], 1, 2, 1, 0)]  # (B, 1, 1, 1)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


class DCGAN(nn.Module):
    """Generator + discriminator; ``forward(x)`` is the discriminator's logit (B,), ``sample`` draws images."""

    def __init__(self, in_channels: int = 1, size: int = 8, nz: int = 64, width: int = 64) -> None:
        super().__init__()
        self.generator = Generator(nz, in_channels, size, width)
        self.discriminator = Discriminator(in_channels, size, width)
        self.nz, self.image_shape = nz, (in_channels, size, size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's init: conv weights N(0, 0.02), BatchNorm scales N(1, 0.02), biases 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator(x)

    def noise(self, n: int, device: torch.device | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ N(0, I), (n, nz)."""
        return torch.randn(n, self.nz, device=device, generator=generator)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, **_: object) -> torch.Tensor:
        """``n`` images (n, C, H, W) in [-1, 1]; the same ``generator`` seed gives the same images."""
        dev = next(self.parameters()).device
        z = self.noise(n, None, generator).to(dev)  # drawn on the CPU: a seed means the same z on any device
        return self.generator(z)


@register_model("dcgan", input_kind="generative", paper="Radford et al. 2016 (DCGAN)")
def dcgan(in_channels: int = 1, input_shape: tuple[int, ...] = (1, 8, 8), nz: int = 64, width: int = 64) -> DCGAN:
    """DCGAN generator + discriminator for square images (side a power of two >= 8); train with task: gan.

    Args:
        input_shape: square (C, H, H) images, H a power of two ≥ 8; inferred from the data
        nz: length of the generator's input noise z ~ N(0, I) (100 in the paper)
        width: channels of the discriminator's first conv, doubled at each ×2 downsampling; the generator
            mirrors it
    """
    if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
        raise ValueError(f"dcgan needs square images (C, H, H), got input shape {tuple(input_shape)}")
    return DCGAN(in_channels, input_shape[1], nz, width)
