"""liandan (炼丹): a PyTorch deep-learning workbench.

One recipe describes data, model, loss and optimizer; liandan trains it, watches and diagnoses
the run, inspects and compresses the model, and exports it. The public API is importable
lazily, so ``import liandan`` stays light::

    import liandan
    run = liandan.train("digits-lenet", overrides=["train.epochs=5"])
    run.summary["final"]["test"]["accuracy"]
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "train": "liandan.train.api",
    "resume": "liandan.train.api",
    "load_run": "liandan.train.run",
    "Run": "liandan.train.run",
    "evaluate": ("liandan.evaluate.metrics", "evaluate_full"),
    "ood": ("liandan.evaluate.ood", "ood"),
    "OODDetector": ("liandan.evaluate.ood", "OODDetector"),
    "write_report": ("liandan.report", "write_report"),
    "predict": "liandan.predict",
    "sample": "liandan.sample",
    "generate": "liandan.generate",
    "exact_match": ("liandan.generate", "exact_match"),
    "load_recipe": "liandan.recipe",
    "Recipe": "liandan.recipe",
    "build_data": "liandan.data.pipeline",
    "build_model": "liandan.train.setup",
    "create_model": ("liandan.api_models", "create_model"),
    "save_model": "liandan.serialize",
    "load_model": "liandan.serialize",
    "LiandanError": "liandan.errors",
    "lr_find": "liandan.train.lr_finder",
    "summary": ("liandan.inspect", "summary"),
    "diagnose": ("liandan.doctor", "diagnose"),
    "finetune": ("liandan.llm.finetune", "finetune"),
    "grpo": ("liandan.llm.rl", "grpo"),
    "reward_model": ("liandan.llm.rl", "reward_model"),
    "quantize": ("liandan.compress", "quantize"),
    "prune": ("liandan.compress", "prune"),
    "distill": ("liandan.compress", "distill"),
    "to_onnx": ("liandan.export", "to_onnx"),
    "to_gguf": ("liandan.export", "to_gguf"),
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'liandan' has no attribute {name!r}")
    module, attr = target if isinstance(target, tuple) else (target, name)
    value = getattr(import_module(module), attr)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """Keeps ``liandan.train`` / ``liandan.evaluate`` / ``liandan.predict`` the public functions.

    Importing a submodule (``liandan.train.loop``) makes Python set ``liandan.train`` to the
    package ``liandan/train/``; the functions must win. Submodules stay importable through
    ``sys.modules`` as usual.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
