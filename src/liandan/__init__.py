"""liandan (炼丹): a PyTorch deep-learning workbench.

One recipe describes data, model, loss and optimizer; liandan trains it, watches and diagnoses
the run, inspects and compresses the model, and exports it. The public API is importable
lazily, so ``import liandan`` stays light::

    import liandan
    run = liandan.train("digits-lenet", overrides=["train.epochs=5"])
    run.summary["final"]["test"]["accuracy"]
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "train": "liandan.training.api",
    "resume": "liandan.training.api",
    "load_run": "liandan.training.run",
    "Run": "liandan.training.run",
    "evaluate": ("liandan.evaluation.metrics", "evaluate_full"),
    "ood": ("liandan.evaluation.ood", "ood"),
    "OODDetector": ("liandan.evaluation.ood", "OODDetector"),
    "write_report": ("liandan.report", "write_report"),
    "predict": ("liandan.prediction", "predict"),
    "Predictor": ("liandan.prediction", "Predictor"),
    "sample": ("liandan.generation.images", "sample"),
    "generate": ("liandan.generation.text", "generate"),
    "exact_match": ("liandan.generation.text", "exact_match"),
    "load_recipe": "liandan.recipe",
    "Recipe": "liandan.recipe",
    "build_data": "liandan.data.pipeline",
    "build_model": "liandan.training.setup",
    "create_model": ("liandan.api_models", "create_model"),
    "save_model": "liandan.serialize",
    "load_model": "liandan.serialize",
    "LiandanError": "liandan.errors",
    "lr_find": "liandan.training.lr_finder",
    "summary": ("liandan.inspection", "summary"),
    "diagnose": ("liandan.doctor", "diagnose"),
    "finetune": ("liandan.llm.finetune", "finetune"),
    "grpo": ("liandan.llm.rl", "grpo"),
    "reward_model": ("liandan.llm.rl", "reward_model"),
    "quantize": ("liandan.compress", "quantize"),
    "prune": ("liandan.compress", "prune"),
    "distill": ("liandan.compress", "distill"),
    "to_onnx": ("liandan.export", "to_onnx"),
    "to_gguf": ("liandan.export", "to_gguf"),
    # the nouns of the training layer, for code that drives it from Python
    "Trainer": ("liandan.training.loop", "Trainer"),
    "Callback": ("liandan.training.callbacks", "Callback"),
    "list_models": ("liandan.api_models", "list_models"),
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
