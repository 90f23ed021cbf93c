"""Saving and loading models both ways the notes describe.

* **Weights only** (the default): ``model.state_dict()`` → ``.safetensors``. Loading needs the
  architecture (a run directory's recipe, or a model you build) but never executes code.
* **The whole model object**: ``torch.save(model)`` pickles the class path and attributes.
  Loading it unpickles, and unpickling can run arbitrary code, so :func:`load_model` refuses
  unless ``trust=True`` (CLI: ``--trust``) — only for files you made yourself.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from liandan.errors import LiandanError
from liandan.weights import load_weights, save_weights

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".bin", ".ckpt")


def save_model(model: nn.Module, path: str | Path, whole: bool = False) -> Path:
    """Save weights as safetensors (default) or, with ``whole=True``, the pickled model object."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if whole:
        if path.suffix == ".safetensors":
            raise LiandanError("a whole model is a pickle: use a .pt path, or whole=False for safetensors")
        torch.save(model, path)
    else:
        save_weights(model, path if path.suffix == ".safetensors" else path.with_suffix(".safetensors"))
    return path


def load_model(path: str | Path, model: nn.Module | None = None, trust: bool = False) -> nn.Module:
    """Load weights into ``model`` (safetensors), or a whole pickled model when ``trust`` is set."""
    path = Path(path)
    if not path.is_file():
        raise LiandanError(f"model file not found: {path}")
    if path.suffix == ".safetensors":
        if model is None:
            raise LiandanError(f"{path} holds weights only; build the model first (or load its run directory)")
        load_weights(model, path)
        return model
    if not trust:
        raise LiandanError(
            f"refusing to load {path}: it is a pickled whole model, and unpickling runs arbitrary code "
            "from the file; pass --trust (trust=True) only for files you created yourself"
        )
    obj = torch.load(path, weights_only=False, map_location="cpu")
    if not isinstance(obj, nn.Module):
        raise LiandanError(f"{path} does not contain a whole nn.Module (got {type(obj).__name__})")
    return obj.eval()
