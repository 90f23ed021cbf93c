"""From a recipe's ``data:`` section to train/val/test batches and the facts a model needs.

Splits are seeded and stratified for classification; normalisation statistics come from the
training split only (using val/test statistics would leak them into training); augmentation
touches the training split only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from liandan.data.base import CLASS, VALUE, Source, check_source
from liandan.data.loaders import LoaderBatches, TensorBatches, parse_augment
from liandan.data.shuffle_split import shuffle_split
from liandan.errors import LiandanError
from liandan.recipe import DataConfig

if TYPE_CHECKING:
    from liandan.registry import Entry


@dataclass
class DataInfo:
    """What the model and the run directory need to know about the data (saved as data.json)."""

    source: str
    task: str
    num_classes: int  # classes, or regression targets
    input_shape: tuple[int, ...]
    class_names: list[str] | None = None
    x_mean: list[float] | None = None  # per channel (images) or per feature
    x_std: list[float] | None = None
    y_mean: list[float] | None = None  # regression targets are standardised too
    y_std: list[float] | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    # token data (lm, mlm, text classification); zero/None for features
    vocab_size: int = 0
    max_len: int = 0  # tokens per row: the model's context
    pad_id: int | None = None
    num_special: int = 0  # ids below this are special tokens (never masked or learned as text)
    mask_prob: float = 0.0  # mlm: re-draw masks at this rate every training batch (0: fixed masks)
    tokenizer: str | None = None  # file in the run directory
    extras: dict[str, Any] = field(default_factory=dict)  # source-specific facts (e.g. arith's answer_after)

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataInfo:
        d = dict(d)
        d["input_shape"] = tuple(d["input_shape"])
        return cls(**d)

    def describe(self) -> str:
        """One line of what was inferred from the data, printed at the start of every run."""
        what = (f"{self.num_classes} classes" if self.class_names and self.task_reads_classes else
                f"{self.num_classes} target{'s' if self.num_classes != 1 else ''}")
        feats = self.extras.get("feature_columns")
        shape = f"{len(feats)} feature columns ({self.input_shape[0]} inputs)" if feats is not None else \
            f"input shape {tuple(self.input_shape)}"
        rows = " / ".join(f"{k} {v}" for k, v in self.sizes.items())
        notes = "".join(f"; {n}" for n in self.extras.get("notes", []))
        return f"data: {self.source}: task {self.task}, {what}, {shape}; rows {rows}{notes}"

    @property
    def task_reads_classes(self) -> bool:
        # token data reads classes when it has labels (a text classifier), not when y is tokens
        return self.y_mean is None and (self.vocab_size == 0 or self.num_classes > 0)

    # normalisation as functions, so predict/evaluate/ood apply exactly what training applied
    def normalize_x(self, x: torch.Tensor) -> torch.Tensor:
        if self.x_mean is None:
            return x
        shape = (-1, 1, 1) if self.is_image else (-1,)
        mean = torch.tensor(self.x_mean, dtype=x.dtype).view(shape)
        std = torch.tensor(self.x_std, dtype=x.dtype).view(shape)
        return (x - mean) / std

    def denormalize_y(self, y: torch.Tensor) -> torch.Tensor:
        if self.y_mean is None:
            return y
        return y * torch.tensor(self.y_std, dtype=y.dtype) + torch.tensor(self.y_mean, dtype=y.dtype)


@dataclass
class DataModule:
    info: DataInfo
    train: TensorBatches | LoaderBatches
    val: TensorBatches | LoaderBatches | None
    test: TensorBatches | LoaderBatches | None
    source: Source
    indices: dict[str, np.ndarray]

    def split(self, name: str) -> TensorBatches | LoaderBatches:
        b = {"train": self.train, "val": self.val, "test": self.test}.get(name)
        if b is None:
            have = [k for k in ("train", "val", "test") if getattr(self, k) is not None]
            raise LiandanError(f"no {name!r} split in this run; available: {', '.join(have)}")
        return b

    def eval_batches(self, name: str) -> TensorBatches | LoaderBatches:
        """The split in a fixed order without augmentation (for evaluation of any split)."""
        b = self.split(name)
        if isinstance(b, TensorBatches):
            return TensorBatches(b.x, b.y, max(b.batch_size, 256))
        return LoaderBatches(b.dataset, max(b.batch_size, 256))


AUTO = "auto"  # recipe.task's default: the task the data source declares


def named_task(name: str) -> Entry | None:
    """The registry entry of the task a recipe names, or None for ``auto`` (the source's own
    task). An unknown name is an error that lists the registered tasks."""
    from liandan.registry import TASKS

    return None if name == AUTO else TASKS.get(name)


def target_kind(entry: Entry) -> str | None:
    """How the task of registry ``entry`` reads y (its ``target_kind``): CLASS, VALUE, or None
    for the source's targets as they are. Read through the registry: this layer imports no task."""
    return getattr(entry.fn, "target_kind", None)


def load_source(name: str, options: dict[str, Any], seed: int, task: str | None = None) -> Source:
    """The data source ``name`` built with ``options``; ``task``: the task the recipe names, which a
    source serving several (text: lm or mlm pairs) builds its targets for."""
    from liandan.registry import DATA

    entry = DATA.get(name)
    opts = entry.validate(options, where="data")
    if "seed" in entry.options() and "seed" not in opts:
        opts["seed"] = seed
    if task is not None and "task" in entry.options() and "task" not in opts:
        opts["task"] = task
    src = entry.fn(**opts)
    check_source(src, name)
    return src


def split_indices(src: Source, fractions: list[float], seed: int, stratify: bool = False) -> dict[str, np.ndarray]:
    """Seeded train/val/test indices; ``stratify``: keep each class's share in every split.

    Each cut is scikit-learn's ``train_test_split(idx, test_size=k, random_state=seed,
    stratify=labels)``, reproduced without importing scikit-learn (``data/shuffle_split.py``)."""
    n = len(src)
    fr = list(fractions) + [0.0] * (3 - len(fractions))
    strat = src.y.numpy() if stratify else None
    if strat is not None and np.bincount(strat).min(initial=n) < 3:
        strat = None  # a class with < 3 samples cannot be spread over three splits

    def cut(idx: np.ndarray, frac: float, labels: np.ndarray | None):
        idx = np.asarray(idx)
        k = int(round(frac * len(idx))) if frac > 0 else 0
        if k == 0:
            return idx, idx[:0]
        if len(idx) < 2:  # nothing to carve a second split from (scikit-learn raised here)
            raise LiandanError(f"data.split: {len(idx)} sample cannot be split further; give more data "
                               f"or a zero fraction for that split")
        k = min(max(k, 1), len(idx) - 1)
        try:
            a, b = shuffle_split(len(idx), k, seed, labels)
        except ValueError:  # too few samples per class to stratify
            a, b = shuffle_split(len(idx), k, seed)
        return np.sort(idx[a]), np.sort(idx[b])

    if src.fixed_splits:  # the files define test (and val: used as it is); else carve val from train
        train, test = src.fixed_splits["train"], src.fixed_splits.get("test", np.array([], int))
        if len(src.fixed_splits.get("val", ())):
            return {"train": train, "val": src.fixed_splits["val"], "test": test}
        val_frac = fr[1] / max(fr[0] + fr[1], 1e-9)
        train, val = cut(train, val_frac, strat[train] if strat is not None else None)
        return {"train": train, "val": val, "test": test}
    idx = np.arange(n)
    rest, test = cut(idx, fr[2], strat)
    val_frac = fr[1] / max(fr[0] + fr[1], 1e-9)
    train, val = cut(rest, val_frac, strat[rest] if strat is not None else None)
    return {"train": train, "val": val, "test": test}


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dims = [0, 2, 3] if x.dim() == 4 else [0] if x.dim() == 2 else list(range(x.dim() - 1))
    mean, std = x.mean(dims), x.std(dims)
    return mean, torch.where(std < 1e-6, torch.ones_like(std), std)  # constant features stay as they are


def build_data(cfg: DataConfig, seed: int = 0, task: str = "auto") -> DataModule:
    """Load the source, split, normalise with training statistics, and batch.

    ``task``: the recipe's; a named task's ``target_kind`` says how y is treated (class ids:
    stratified splits and a class count; values: standardised; None: passed through), ``auto``
    takes the source's own task and targets."""
    entry = named_task(task)
    src = load_source(cfg.source, cfg.options, seed, entry.name if entry else None)
    kind = src.targets
    if entry is not None:
        kind = target_kind(entry)
        if kind == VALUE and src.targets == CLASS:  # class ids regressed as values
            src.y, src.targets, src.num_classes = src.y.float()[:, None], VALUE, None
        elif kind is not None and kind != src.targets:
            what = "continuous" if src.targets == VALUE else src.targets
            raise LiandanError(f"data {cfg.source!r} has {what} targets; it cannot be used with task: {entry.name}")
        src.task = entry.name  # the task reads the source's targets as they are (tokens, captions, labels)
    idx = split_indices(src, cfg.split, seed, stratify=kind == CLASS)
    if len(idx["train"]) == 0:
        raise LiandanError("data.split leaves no training samples")
    y = src.y
    out_dim = src.num_classes if kind == CLASS else (y.shape[1] if y.dim() > 1 else 1)
    if src.facts and kind not in (CLASS, VALUE):
        out_dim = 0  # token targets (lm, mlm): the output size is the vocabulary, not a class count
    info = DataInfo(source=cfg.source, task=src.task, num_classes=int(out_dim or 0),
                    input_shape=src.sample_shape, class_names=src.class_names,
                    sizes={k: int(len(v)) for k, v in idx.items()})
    for k, v in src.facts.items():
        if k in DataInfo.__dataclass_fields__:
            setattr(info, k, v)
        else:
            info.extras[k] = v
    if src.tokenizer is not None:
        info.tokenizer = "tokenizer.json"
    if kind == VALUE and y.dim() == 1:
        y = y[:, None]
    if kind == VALUE and cfg.normalize:
        ym, ys = _stats(y[idx["train"]])
        info.y_mean, info.y_std = ym.tolist(), ys.tolist()
        y = (y - ym) / ys
    augment = parse_augment(cfg.augment, image=len(info.input_shape) == 3)
    eval_bs = cfg.eval_batch_size or 4 * cfg.batch_size
    if src.x is not None:
        x = src.x
        if cfg.normalize and x.is_floating_point():  # token ids are never standardised
            mean, std = _stats(x[idx["train"]])
            info.x_mean, info.x_std = mean.tolist(), std.tolist()
            x = info.normalize_x(x)
        x = x.contiguous()

        def make(name: str, train: bool):
            i = torch.as_tensor(idx[name])
            if len(i) == 0:
                return None
            return TensorBatches(x[i], y[i], cfg.batch_size if train else eval_bs, shuffle=train, seed=seed,
                                 augment=augment if train else None)
    else:
        from torch.utils.data import Subset

        ds = src.dataset
        if cfg.normalize:
            train_x = torch.stack([ds[int(i)][0] for i in idx["train"]])
            mean, std = _stats(train_x)
            info.x_mean, info.x_std = mean.tolist(), std.tolist()
            ds.transform = info.normalize_x

        def make(name: str, train: bool):
            if len(idx[name]) == 0:
                return None
            return LoaderBatches(Subset(ds, idx[name].tolist()), cfg.batch_size if train else eval_bs,
                                 shuffle=train, seed=seed, augment=augment if train else None,
                                 num_workers=cfg.num_workers)

    return DataModule(info, make("train", True), make("val", False), make("test", False), src, idx)
