"""What a data source returns, and the checks every source's output goes through."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from liandan.errors import LiandanError

# What a source's targets y are (Source.targets), in the data layer's own terms: the pipeline
# stratifies, counts classes, standardises or passes y through by these, never by task names.
CLASS = "class"  # (N,) int64 class ids 0..K-1
VALUE = "value"  # (N,) or (N, k) float32 values
TOKENS = "tokens"  # (N, T) int64 token ids (-100 where nothing is learned): next tokens, masks, captions


@dataclass
class Source:
    """Raw data from a source, before splitting and normalisation.

    Either ``x`` (all features in memory, ``(N, ...)`` float32) or ``dataset`` (file-backed,
    items are ``(x, y)`` with ``x`` a float tensor) is set. ``y`` always holds every label, so
    splits can be stratified without reading files.
    """

    y: torch.Tensor  # (N,) int64 class ids, or (N,) / (N, k) float32 targets, or (N, T) token ids
    task: str  # the registered task these targets serve (DataInfo.task unless the recipe names another)
    targets: str  # what y holds: CLASS, VALUE or TOKENS
    x: torch.Tensor | None = None
    dataset: Dataset | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    feature_names: list[str] | None = None
    fixed_splits: dict[str, np.ndarray] | None = None  # e.g. MNIST's own train/test files
    meta: dict[str, Any] = field(default_factory=dict)  # per-sample extras (e.g. shape colours)
    tokenizer: Any = None  # token sources: saved to the run directory as tokenizer.json
    facts: dict[str, Any] = field(default_factory=dict)  # copied into DataInfo (vocab_size, pad_id, ...)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        if self.x is not None:
            return tuple(self.x.shape[1:])
        return tuple(self.dataset[0][0].shape)


def classification(x: np.ndarray | torch.Tensor, y: np.ndarray, class_names: list[str] | None = None, **kw) -> Source:
    """Build a classification Source from arrays; labels become 0..K-1 int64."""
    y = np.asarray(y)
    if y.dtype.kind not in "iub":
        names, y = np.unique(y, return_inverse=True)
        class_names = class_names or [str(n) for n in names]
    k = int(y.max()) + 1 if len(y) else 0
    return Source(
        x=torch.as_tensor(np.asarray(x), dtype=torch.float32), y=torch.as_tensor(y, dtype=torch.int64),
        task="classify", targets=CLASS, num_classes=k, class_names=class_names or [str(i) for i in range(k)], **kw,
    )


def regression(x: np.ndarray, y: np.ndarray, **kw) -> Source:
    return Source(x=torch.as_tensor(np.asarray(x), dtype=torch.float32),
                  y=torch.as_tensor(np.asarray(y), dtype=torch.float32), task="regress", targets=VALUE, **kw)


def served(source: str, task: str, tasks: tuple[str, ...]) -> None:
    """Refuse a ``task`` option a source builds no targets for (``tasks``: those it serves)."""
    if task in tasks:
        return
    raise LiandanError(f"data {source} serves tasks {', '.join(tasks)}, not {task!r}")


def check_source(src: Source, name: str) -> None:
    """Reject data that would train into garbage: NaN/inf features, bad labels, empty sets."""
    if src.targets not in (CLASS, VALUE, TOKENS):
        raise LiandanError(f"data {name!r}: targets must be {CLASS}, {VALUE} or {TOKENS}, got {src.targets!r}")
    if len(src) < 3:
        raise LiandanError(f"data {name!r}: only {len(src)} samples; need at least 3 to split")
    if src.x is not None:
        if len(src.x) != len(src.y):
            raise LiandanError(f"data {name!r}: {len(src.x)} feature rows but {len(src.y)} labels")
        bad = ~torch.isfinite(src.x)
        if bad.any():
            rows = bad.reshape(len(bad), -1).any(1).nonzero().flatten()
            raise LiandanError(
                f"data {name!r}: {int(bad.sum())} NaN/inf feature values in {len(rows)} samples "
                f"(first at row {int(rows[0])}); drop or impute them"
            )
    if src.targets == CLASS:
        if src.y.dtype != torch.int64:
            raise LiandanError(f"data {name!r}: classification labels must be integers, got {src.y.dtype}")
        if (src.y < 0).any():
            raise LiandanError(f"data {name!r}: negative class label {int(src.y.min())}")
        if src.num_classes is not None and int(src.y.max()) >= src.num_classes:
            raise LiandanError(f"data {name!r}: label {int(src.y.max())} out of range for {src.num_classes} classes")
    elif not torch.isfinite(src.y).all():
        raise LiandanError(f"data {name!r}: NaN/inf regression targets")
