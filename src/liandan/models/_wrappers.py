"""Weight reparametrisations applied to a built model: weight normalisation and spectral
normalisation. They change *how a layer's weight is computed*, not the architecture, so they
wrap any model instead of being a builder option of each family.

- Weight normalisation (Salimans & Kingma 2016, "Weight Normalization: A Simple
  Reparameterization to Accelerate Training of Deep Neural Networks"): w = g · v / ‖v‖ per
  output unit. Direction and length are learned separately, which conditions the optimisation
  like batch norm does but without batch statistics (works at batch size 1 and in RNNs).
- Spectral normalisation (Miyato et al. 2018, "Spectral Normalization for Generative
  Adversarial Networks"): W / σ(W), σ the largest singular value, estimated by one power
  iteration per training forward. Each layer becomes (at most) 1-Lipschitz, which stabilises
  GAN discriminators and bounds how much a layer can amplify its input.

Both use :mod:`torch.nn.utils.parametrizations` (the module-based API, which deep-copies and
saves in ``state_dict`` as ``<layer>.parametrizations.weight.original0/1``).
"""

from __future__ import annotations

from typing import Literal

from torch import nn
from torch.nn.utils import parametrizations, parametrize

from liandan.errors import LiandanError

WeightNormKind = Literal["weight", "spectral", "none"]
DEFAULT_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
)


def apply_weight_norm(
    model: nn.Module,
    kind: WeightNormKind = "weight",
    *,
    layers: tuple[type[nn.Module], ...] = DEFAULT_LAYERS,
    exclude: tuple[str, ...] = (),
    n_power_iterations: int = 1,
) -> nn.Module:
    """Reparametrise the ``weight`` of every ``layers`` module of ``model`` in place; returns ``model``.

    ``kind``: ``"weight"`` (w = g·v/‖v‖, with ``g`` initialised to ‖v‖ so outputs are unchanged at
    first), ``"spectral"`` (W/σ(W)) or ``"none"``. ``exclude`` lists module names to leave alone
    (e.g. the final classifier). Layers already parametrised are skipped, so applying twice is safe.
    """
    if kind == "none":
        return model
    if kind not in ("weight", "spectral"):
        raise LiandanError(f"unknown weight normalisation {kind!r}; available: weight, spectral, none")
    for name, m in list(model.named_modules()):
        if not isinstance(m, layers) or name in exclude or getattr(m, "weight", None) is None:
            continue
        if parametrize.is_parametrized(m, "weight"):
            continue
        if kind == "weight":
            # dim=0: one g per output unit (per row of a Linear, per filter of a Conv).
            parametrizations.weight_norm(m, "weight", dim=0)
        else:
            # Transposed convs keep output channels on dim 1 of the weight.
            dim = 1 if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
            parametrizations.spectral_norm(m, "weight", n_power_iterations=n_power_iterations, dim=dim)
    return model


def remove_weight_norm(model: nn.Module) -> nn.Module:
    """Bake the current reparametrised weights back into plain ``weight`` tensors (for export)."""
    for m in model.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return model
