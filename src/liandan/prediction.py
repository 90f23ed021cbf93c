"""Prediction on user inputs: image files, .npy / .csv arrays, or literal feature vectors.

An input is a file name, comma-separated numbers, or a sequence of numbers (an array): a sequence
is taken literally, without looking at the file system (the agents' tools pass features so).
Files are opened through :mod:`liandan.paths` (checked against the agents' roots when active)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liandan.errors import LiandanError
from liandan.paths import open_checked

Input = str | Sequence[float] | np.ndarray


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte: not a file
        return False


def _literal(values: Any) -> list[tuple[str, np.ndarray]]:
    try:
        a = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise LiandanError("a literal input must be a sequence of numbers") from None
    shown = [repr(float(v)) for v in a[:16]]
    name = ",".join(shown) if len(a) <= 16 else f"{','.join(shown[:4])},... ({len(a)} values)"
    return [(name, a.astype(np.float32))]


def _read_input(text: Input, shape: tuple[int, ...] | None) -> list[tuple[str, np.ndarray]]:
    if not isinstance(text, str | Path):
        return _literal(text)
    p = Path(text)
    if _is_file(p):
        suf = p.suffix.lower()
        if suf == ".npy":
            with open_checked(p, "rb", "input file") as f:
                a = np.load(f, allow_pickle=False).astype(np.float32)
            rows = a[None] if shape is not None and a.shape == tuple(shape) else a
            return [(f"{p}[{i}]", r) for i, r in enumerate(rows)]
        if suf == ".csv":
            with open_checked(p, "r", "input file") as f:
                a = np.loadtxt(f, delimiter=",", dtype=np.float32, ndmin=2)
            return [(f"{p}[{i}]", r) for i, r in enumerate(a)]
        from PIL import Image

        try:
            with open_checked(p, "rb", "input file") as f, Image.open(f) as im:
                mode = "L" if shape and shape[0] == 1 else "RGB"
                im = im.convert(mode)
                if shape and len(shape) == 3 and im.size != (shape[2], shape[1]):
                    im = im.resize((shape[2], shape[1]))
                a = np.asarray(im, dtype=np.float32) / 255.0
        except OSError:
            raise LiandanError(f"cannot read {p}: not an image, .npy or .csv file") from None
        return [(str(p), a[None] if a.ndim == 2 else a.transpose(2, 0, 1))]
    try:
        return [(str(text), np.array([float(v) for v in str(text).split(",")], np.float32))]
    except ValueError:
        raise LiandanError(f"input {text!r} is neither a file nor comma-separated numbers") from None


def predict(model_or_run: str | Path, inputs: list[Input], trust: bool = False, top: int = 3) -> list[dict[str, Any]]:
    """Predict each input: the top classes with probabilities (classifiers, and CLIP-style runs
    zero-shot), the value (regressors), or the caption (captioning runs)."""
    from liandan.serialize import load_model
    from liandan.training.run import load_run
    from liandan.training.tasks import build_task, top_classes

    path = Path(model_or_run)
    info = None
    if path.is_dir():
        run = load_run(path)
        model, info = run.model, run.info
        one = build_task(info, None, run.recipe).predictor(run, top)  # the task says what a prediction is
    else:  # a bare weights file: a classifier's logits
        model = load_model(path, trust=trust)
        one = lambda x: {"classes": top_classes(model(x[None])[0], None, top)}  # noqa: E731
    shape = tuple(info.input_shape) if info else None
    items = [item for text in inputs for item in _read_input(text, shape)]
    out = []
    model.eval()
    with torch.no_grad():
        for name, arr in items:
            x = torch.from_numpy(np.ascontiguousarray(arr)).float()
            if shape is not None and x.numel() != int(np.prod(shape)):
                raise LiandanError(f"input {name}: {x.numel()} values, the model takes shape {shape}")
            if shape is not None:
                x = x.reshape(shape)
            if info is not None:
                x = info.normalize_x(x)
            out.append({"input": name, **one(x)})
    return out
