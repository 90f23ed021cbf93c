"""Evaluation of trained runs: full metrics (``evaluate_full``) and OOD detection (``ood``).

Submodules import torch; these names load lazily so ``import liandan.evaluate`` is cheap. The OOD
entry point is ``liandan.evaluate.ood.ood`` (exported as ``liandan.ood``; not re-exported here,
where ``ood`` is the submodule).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_API = {
    "evaluate_full": "liandan.evaluate.metrics",
    "classification_metrics": "liandan.evaluate.metrics",
    "regression_metrics": "liandan.evaluate.metrics",
    "OODDetector": "liandan.evaluate.ood",
    "ood_finding": "liandan.evaluate.ood",
    "ood_sweep": "liandan.evaluate.ood",
    "ood_metrics": "liandan.evaluate.ood_metrics",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'liandan.evaluate' has no attribute {name!r}")
    value = getattr(import_module(_API[name]), name)
    globals()[name] = value
    return value
