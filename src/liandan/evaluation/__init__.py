"""Evaluation of trained runs: full metrics (``evaluate_full``) and OOD detection (``ood``).

Submodules import torch; these names load lazily so ``import liandan.evaluate`` is cheap. The OOD
entry point is ``liandan.evaluation.ood.ood`` (exported as ``liandan.ood``; not re-exported here,
where ``ood`` is the submodule).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_API = {
    "evaluate_full": "liandan.evaluation.metrics",
    "classification_metrics": "liandan.evaluation.metrics",
    "regression_metrics": "liandan.evaluation.metrics",
    "OODDetector": "liandan.evaluation.ood",
    "ood_finding": "liandan.evaluation.ood",
    "ood_sweep": "liandan.evaluation.ood",
    "ood_metrics": "liandan.evaluation.ood_metrics",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'liandan.evaluation' has no attribute {name!r}")
    value = getattr(import_module(_API[name]), name)
    globals()[name] = value
    return value
