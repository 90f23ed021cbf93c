"""File-format sources (CSV: data/tables.py): class-per-folder images, MNIST IDX files, CIFAR python batches.

All read local paths only (no downloads). CIFAR batches are Python pickles, so they are read
with an unpickler that only admits the numpy classes an array needs: no code can run.

Every file and folder is opened through :mod:`liandan.paths`: under the agents' roots a file or
class folder whose realpath leaves them (a planted symlink) refuses the source, naming it.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from liandan.data.base import CLASS, Source, classification
from liandan.data.tables import existing
from liandan.errors import LiandanError
from liandan.paths import active_roots, check_tree, open_checked
from liandan.registry import register_data

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


_existing = existing


class ImageFiles(Dataset):
    """Images decoded on access (a file-backed dataset, batched by torch's DataLoader)."""

    def __init__(self, files: list[Path], labels: torch.Tensor, size: int | None, grayscale: bool) -> None:
        self.files, self.labels, self.size, self.mode = files, labels, size, "L" if grayscale else "RGB"
        self.roots = active_roots()  # kept: images decode later, maybe in DataLoader worker processes
        self.transform = None  # set by the pipeline: normalisation (and train augmentation)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> torch.Tensor:
        from PIL import Image

        try:
            with open_checked(self.files[i], "rb", "image_folder file", roots=self.roots) as f, Image.open(f) as im:
                im = im.convert(self.mode)
        except (OSError, SyntaxError, ValueError) as e:  # changed on disk since the source scanned it
            raise LiandanError(f"image_folder: cannot decode {self.files[i]}: {e}") from None
        if self.size and im.size != (self.size, self.size):
            im = im.resize((self.size, self.size), Image.BILINEAR)
        a = np.asarray(im, dtype=np.float32) / 255.0
        return torch.from_numpy(a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy())

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.load(i)
        return (self.transform(x) if self.transform else x), self.labels[i]


@register_data("image_folder", tags=("image", "file"))
def image_folder(path: str, size: int | None = None, grayscale: bool = False,
                 on_bad_file: Literal["error", "skip"] = "error") -> Source:
    """Class-per-folder images (root/<class>/*.png|jpg), decoded lazily; ``size`` resizes to size×size.

    A root holding train/ and val/ (and test/) folders, each with the class folders, gives those
    splits instead of random ones. Every image is decoded once up front, so a corrupt or truncated
    file is found before training, named in one line (``on_bad_file: error``) or skipped and counted.

    Args:
        path: root folder with one sub-folder of .png/.jpg images per class (the folder names are the classes),
            or with train/, val/ (and test/) folders that each hold the class folders
        size: resize every image to size×size pixels; None: keep the files' size (all must match)
        grayscale: decode as one grey channel instead of RGB
        on_bad_file: an image that cannot be decoded: error (names the file) or skip (the count is reported)
    """
    root = _existing(path, "image_folder")
    subdirs = {d.name: d for d in check_tree(root.iterdir(), "image_folder entry") if d.is_dir()}
    parts = [s for s in ("train", "val", "test") if s in subdirs]
    split_roots = [subdirs[s] for s in parts] if {"train", "val"} <= set(subdirs) else [root]
    classes = sorted({d.name for r in split_roots for d in check_tree(r.iterdir(), "image_folder entry")
                      if d.is_dir()})
    if not classes:
        raise LiandanError(f"image_folder {root}: no class sub-folders")
    files, labels, part, bad = [], [], [], []
    for s, r in enumerate(split_roots):
        for k, c in enumerate(classes):
            if not (r / c).is_dir():
                continue
            for f in sorted(check_tree((r / c).iterdir(), "image_folder file")):
                if f.suffix.lower() not in IMAGE_EXT:
                    continue
                if _unreadable(f, on_bad_file):
                    bad.append(f)
                    continue
                files.append(f)
                labels.append(k)
                part.append(s)
    if not files:
        raise LiandanError(f"image_folder {root}: no readable images ({', '.join(IMAGE_EXT)}) in the class folders")
    ds = ImageFiles(files, torch.tensor(labels), size, grayscale)
    if size is None:  # every image must share one shape to batch: take the first one's
        ds.size = ds.load(0).shape[-1]
    fixed = None
    if len(split_roots) > 1:
        a = np.asarray(part)
        fixed = {name: np.flatnonzero(a == i) for i, name in enumerate(parts)}
    notes = [f"skipped {len(bad)} unreadable image files (first: {bad[0]})"] if bad else []
    return Source(y=ds.labels, task="classify", targets=CLASS, dataset=ds, num_classes=len(classes),
                  class_names=classes, fixed_splits=fixed, facts={"notes": notes} if notes else {})


def _unreadable(f: Path, on_bad_file: str) -> bool:
    """Decode ``f`` fully (a truncated file fails only when its pixels are read); True when it
    cannot be and ``on_bad_file`` is skip, an error naming the file when it is error."""
    from PIL import Image

    try:
        with open_checked(f, "rb", "image_folder file") as fh, Image.open(fh) as im:
            im.load()
        return False
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        if on_bad_file == "skip":
            return True
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LiandanError(f"image_folder: cannot decode {f}: {msg} (data.on_bad_file: skip skips such files)") \
            from None


def _read_idx(path: Path) -> np.ndarray:
    with open_checked(path, "rb", "mnist_idx file") as raw:
        data = gzip.GzipFile(fileobj=raw).read() if path.suffix == ".gz" else raw.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise LiandanError(f"{path}: not an IDX file (bad magic)")
    dtype = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}.get(data[2])
    if dtype is None:
        raise LiandanError(f"{path}: unknown IDX type code {data[2]:#x}")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise LiandanError(f"{path}: truncated IDX file ({arr.size} values, header says {int(np.prod(dims))})")
    return arr.reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (root / name).exists():
            return root / name
    raise LiandanError(f"mnist_idx {root}: missing {stem}[.gz]")


@register_data("mnist_idx", tags=("image", "file"))
def mnist_idx(path: str) -> Source:
    """MNIST-format IDX files (train-images-idx3-ubyte[.gz] etc.) from a local folder; keeps its test split.

    Args:
        path: folder with the train- and t10k- images-idx3-ubyte / labels-idx1-ubyte files (optionally .gz);
            t10k is the test split
    """
    root = _existing(path, "mnist_idx")
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        xi = _read_idx(_find(root, f"{prefix}-images-idx3-ubyte"))
        yi = _read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"))
        if len(xi) != len(yi):
            raise LiandanError(f"mnist_idx {root}: {split} has {len(xi)} images but {len(yi)} labels")
        parts[split] = (xi, yi)
    x = np.concatenate([parts["train"][0], parts["test"][0]]).astype(np.float32)[:, None] / 255.0
    y = np.concatenate([parts["train"][1], parts["test"][1]]).astype(np.int64)
    n_train = len(parts["train"][1])
    return classification(x, y, fixed_splits={"train": np.arange(n_train), "test": np.arange(n_train, len(y))})


class _ArrayUnpickler(pickle.Unpickler):
    """Admit only what a dict of numpy arrays needs; anything else is refused, not executed."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("builtins", "bytes"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")


def _read_cifar(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open_checked(path, "rb", "cifar_batches file") as f:
            d = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise LiandanError(f"cifar_batches {path}: unreadable batch: {e}") from None
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    labels = d.get("labels", d.get("fine_labels"))
    if "data" not in d or labels is None:
        raise LiandanError(f"cifar_batches {path}: batch has no 'data'/'labels'")
    return np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32), np.asarray(labels, np.int64)


@register_data("cifar_batches", tags=("image", "file"))
def cifar_batches(path: str) -> Source:
    """CIFAR-10/100 "python version" batches (data_batch_*, test_batch) from a local folder.

    Args:
        path: folder of the python-version batches (data_batch_1..5 and test_batch; CIFAR-100's train and
            test); the test file is the test split
    """
    root = _existing(path, "cifar_batches")
    train = sorted(root.glob("data_batch_*")) or sorted(root.glob("train"))
    test = sorted(root.glob("test_batch")) or sorted(root.glob("test"))
    if not train or not test:
        raise LiandanError(f"cifar_batches {root}: expected data_batch_* and test_batch files")
    tr = [_read_cifar(p) for p in train]
    te = [_read_cifar(p) for p in test]
    x = np.concatenate([a for a, _ in tr + te]).astype(np.float32) / 255.0
    y = np.concatenate([b for _, b in tr + te])
    n_train = sum(len(b) for _, b in tr)
    return classification(x, y, fixed_splits={"train": np.arange(n_train), "test": np.arange(n_train, len(y))})
