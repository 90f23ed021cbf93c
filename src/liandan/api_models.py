"""``liandan.create_model``: build any registered model by name, as ``timm.create_model`` does."""

from __future__ import annotations

from typing import Any

from torch import nn


def create_model(name: str, **options: Any) -> nn.Module:
    """Build registered model ``name`` with ``options`` (validated against its signature)."""
    from liandan.registry import MODELS

    entry = MODELS.get(name)
    return entry.fn(**entry.validate(options, where="model"))


def list_models(pattern: str = "*", tag: str | None = None) -> list[str]:
    """Registered model names matching the shell-style ``pattern`` (``"resnet*"``), as
    ``timm.list_models`` does; ``tag`` keeps those registered with that tag."""
    import fnmatch

    from liandan.registry import MODELS

    return [e.name for e in MODELS.entries()
            if fnmatch.fnmatch(e.name, pattern) and (tag is None or tag in e.tags)]
