"""``liandan.create_model``: build any registered model by name, as ``timm.create_model`` does."""

from __future__ import annotations

from typing import Any

from torch import nn


def create_model(name: str, **options: Any) -> nn.Module:
    """Build registered model ``name`` with ``options`` (validated against its signature)."""
    from liandan.registry import MODELS

    entry = MODELS.get(name)
    return entry.fn(**entry.validate(options, where="model"))
