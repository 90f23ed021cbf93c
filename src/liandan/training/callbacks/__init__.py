"""Training callbacks: the base class and the built-in ones (one module each).

The trainer builds its default set from the recipe (:func:`~liandan.training.callbacks.defaults.default_callbacks`):
:class:`CSVLogger` (metrics.csv), :class:`TensorBoardLogger` (tb/), :class:`EarlyStopping` (best
tracking and patience), :class:`ProgressBar` (bar and epoch lines), then the user's callbacks,
then :class:`ModelCheckpoint` (periodic, epoch-end and interrupt checkpoints, the best link) and
:class:`SignalHandler` (SIGINT/SIGTERM: finish the step, checkpoint, status ``interrupted``).
A user callback of a built-in's class replaces that default.

Callbacks named in a recipe (``train.callbacks: [{name: ..., ...options}]``) come from the
``CALLBACKS`` registry; register one with ``@register_callback(name)`` on the class (its
``__init__`` keywords are its options).

This package stays light (no torch at import): the agents import :class:`Callback` for their
cancel hook; the built-ins load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from liandan.registry import register_callback
from liandan.training.callbacks.base import HOOKS, Callback

_BUILTINS = {
    "CSVLogger": "csv_logger",
    "TensorBoardLogger": "tensorboard",
    "EarlyStopping": "early_stopping",
    "ProgressBar": "progress_bar",
    "ModelCheckpoint": "model_checkpoint",
    "SignalHandler": "signals",
}

__all__ = ["HOOKS", "Callback", "register_callback", *_BUILTINS]


def __getattr__(name: str) -> Any:
    if name in _BUILTINS:
        return getattr(importlib.import_module(f"{__name__}.{_BUILTINS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
