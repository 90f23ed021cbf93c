"""Prediction on user inputs: image files, .npy / .csv arrays, or literal feature vectors.

An input is a file name, comma-separated numbers, or a sequence of numbers (an array): a sequence
is taken literally, without looking at the file system (the agents' tools pass features so).
Files are opened through :mod:`liandan.paths` (checked against the agents' roots when active)."""

from __future__ import annotations

import csv as _csv
import glob
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liandan.errors import LiandanError
from liandan.paths import open_checked

Input = str | Sequence[float] | np.ndarray
INPUT_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".npy", ".csv")


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


def _expand(text: Input) -> list[Input]:
    """A folder (every input file in it, recursively) or a glob pattern, as file names; else ``text``."""
    if not isinstance(text, str | Path) or _is_file(Path(text)):
        return [text]
    p = Path(text)
    if p.is_dir():
        found = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in INPUT_EXT)
        if not found:
            raise LiandanError(f"folder {p} holds no inputs ({', '.join(INPUT_EXT)})")
        return found
    if any(c in str(text) for c in "*?["):
        found = sorted(f for f in glob.glob(str(text), recursive=True) if _is_file(Path(f)))
        if not found:
            raise LiandanError(f"no files match {text!r}")
        return found
    return [text]


def _read_csv(p: Path, info: Any) -> list[tuple[str, np.ndarray]]:
    """Rows of a CSV file: with a header (the training file's format) columns are matched by name,
    the target column ignored, categorical columns one-hot encoded as in training."""
    from liandan.data.tables import is_float, one_hot

    with open_checked(p, "r", "input file", newline="") as f:
        rows = [[v.strip() for v in r] for r in _csv.reader(f) if r]
    if not rows:
        raise LiandanError(f"input {p}: empty CSV file")
    extras = info.extras if info is not None else {}
    cols, cats = extras.get("feature_columns"), extras.get("categories", {})
    header = None if all(is_float(v) for v in rows[0]) else rows.pop(0)
    if header is not None and cols is not None:
        absent = [c for c in cols if c not in header]
        if absent:
            raise LiandanError(f"input {p}: no column {absent[0]!r} (the run's features: {', '.join(cols)})")
        order = [header.index(c) for c in cols]
    elif header is not None:  # a run without column names: every column, in order
        order, cols = list(range(len(header))), header
    elif cols is not None and cats:  # no header: the training columns in order, categories as text
        order = list(range(len(cols)))
    else:
        order, cols = None, None
    out = []
    for i, row in enumerate(rows):
        name = f"{p}[{i}]"
        if order is None:
            vals = row
        else:
            if max(order, default=-1) >= len(row):
                raise LiandanError(f"input {name}: {len(row)} values, expected the columns {', '.join(cols)}")
            vals = [row[j] for j in order]
        parts = []
        for c, v in zip(cols or [None] * len(vals), vals, strict=True):
            if c in cats:
                parts.append(one_hot([v], cats[c])[0])
                continue
            if not is_float(v):
                raise LiandanError(f"input {name}: column {c or '?'}: non-numeric value {v!r}")
            parts.append(np.array([float(v)], np.float32))
        out.append((name, np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)))
    return out


def _read_input(text: Input, shape: tuple[int, ...] | None, info: Any = None) -> list[tuple[str, np.ndarray]]:
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
            return _read_csv(p, info)
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
    info, items = None, None
    if path.is_dir():
        run = load_run(path)
        model, info = run.model, run.info
        task = build_task(info, None, run.recipe)
        one = task.predictor(run, top)  # the task says what a prediction is
        items = task.read_inputs(run, list(inputs))  # texts: the task reads them
    else:  # a bare weights file: a classifier's logits
        model = load_model(path, trust=trust)
        one = lambda x: {"classes": top_classes(model(x[None])[0], None, top)}  # noqa: E731
    shape = tuple(info.input_shape) if info else None
    if items is not None:  # already model inputs (token ids of any length)
        shape, info = None, None
    else:
        items = [item for text in inputs for one_in in _expand(text) for item in _read_input(one_in, shape, info)]
    out = []
    model.eval()
    with torch.no_grad():
        for name, arr in items:
            x = arr if isinstance(arr, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(arr)).float()
            if shape is not None and x.numel() != int(np.prod(shape)):
                raise LiandanError(f"input {name}: {x.numel()} values, the model takes shape {shape}")
            if shape is not None:
                x = x.reshape(shape)
            if info is not None:
                x = info.normalize_x(x)
            out.append({"input": name, **one(x)})
    return out


def write_predictions(preds: list[dict[str, Any]], out: str | Path) -> Path:
    """Write ``preds`` (from :func:`predict`) as a CSV file: input, prediction, probability."""
    out = Path(out)
    try:
        f = open(out, "w", newline="")  # noqa: SIM115 (closed below)
    except OSError as e:
        raise LiandanError(f"--out {out}: cannot write: {e.strerror}") from None
    with f:
        w = _csv.writer(f)
        w.writerow(["input", "prediction", "probability"])
        for p in preds:
            if "classes" in p:
                best = p["classes"][0]
                w.writerow([p["input"], best["label"], f"{best['prob']:.6g}"])
            else:
                v = p.get("value", p.get("caption"))
                w.writerow([p["input"], v if not isinstance(v, list) else " ".join(map(str, v)), ""])
    return out


class Predictor:
    """A trained run's model that takes raw inputs: pixels in 0..1, feature values as in the data.

    ``run.model`` expects inputs standardised with the training split's statistics (data.json's
    ``x_mean``/``x_std``); given raw ones it answers wrongly without any error. A Predictor applies
    that normalisation (and, for a regressor, undoes the targets'), so::

        p = liandan.Predictor("runs/digits-lenet")   # a run directory or a loaded Run
        probs = p(images)   # one raw sample of the input shape, or a batch of them (tensor or array)

    returns class probabilities for a classifier (softmax of the logits) and values in the
    target's units for a regressor; one sample in, one row out. ``p.predict([...])`` takes what
    :func:`predict` takes (files, folders, literal vectors).
    """

    def __init__(self, run: Any) -> None:
        from liandan.training.run import load_run
        from liandan.training.tasks import task_class

        self.run = load_run(run) if isinstance(run, str | Path) else run
        self.info = self.run.info
        self.model = self.run.model.eval()
        self.classifies = task_class(self.info.task).is_classification

    def __call__(self, x: Any) -> torch.Tensor:
        shape = tuple(self.info.input_shape)
        x = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, torch.Tensor) else x).float()
        one = tuple(x.shape) == shape
        if one:
            x = x[None]
        if tuple(x.shape[1:]) != shape:
            raise LiandanError(f"input of shape {tuple(x.shape)}: the model takes {shape} or a batch (N, *{shape})")
        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model(self.info.normalize_x(x).to(device)).float().cpu()
        out = out.softmax(-1) if self.classifies else self.info.denormalize_y(out)
        return out[0] if one else out

    def predict(self, inputs: list[Input], top: int = 3) -> list[dict[str, Any]]:
        """As :func:`predict` on this run."""
        return predict(self.run.dir, inputs, top=top)
