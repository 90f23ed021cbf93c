"""The model zoo: one module per family, each entry registered with ``@register_model``.

Builder convention: a builder's keyword parameters are the recipe's model options. Three
names are *inferred from the data* and passed when the builder declares them and the recipe
does not set them: ``num_classes`` (outputs; targets for regression), ``in_channels`` and
``input_shape`` (one sample's shape, e.g. ``(1, 8, 8)`` or ``(64,)``); for token data also
``vocab_size``, ``max_len`` (tokens per row) and ``task`` (e.g. bert's mlm or classify head).

Every module in this package is imported on first registry lookup, so adding a family is
adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil

from liandan.registry import INFERRED

__all__ = ["INFERRED"]

for _m in pkgutil.iter_modules(__path__):
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")
