"""File-format sources: CSV, class-per-folder images, MNIST IDX files, CIFAR python batches.

All read local paths only (no downloads). CIFAR batches are Python pickles, so they are read
with an unpickler that only admits the numpy classes an array needs: no code can run.

Every file and folder is opened through :mod:`liandan.paths`: under the agents' roots a file or
class folder whose realpath leaves them (a planted symlink) refuses the source, naming it.
"""

from __future__ import annotations

import csv as _csv
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from liandan.data.base import CLASS, VALUE, Source, classification, regression
from liandan.errors import LiandanError
from liandan.paths import active_roots, check_path, check_tree, open_checked
from liandan.registry import register_data

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _existing(path: str, what: str) -> Path:
    p = Path(path).expanduser()
    check_path(p, f"{what} data")  # before anything about the path is told
    if not p.exists():
        raise LiandanError(f"{what}: path not found: {p}")
    return p


@register_data("csv", tags=("tabular", "file"))
def csv(path: str, target: str = "label", task: str = "auto", delimiter: str = ",") -> Source:
    """A CSV file with a header row; ``target`` names the label column, the rest are numeric features.

    Args:
        path: the CSV file: a header row, then one sample per row
        target: name of the label column; every other column must be numeric (an empty cell is NaN)
        task: classify, regress, or auto: classify when the target is non-numeric or at most 20 distinct
            integers, else regress
        delimiter: field separator, e.g. ';' or a tab
    """
    p = _existing(path, "csv")
    with open_checked(p, "r", "csv data", newline="") as f:
        rows = list(_csv.reader(f, delimiter=delimiter))
    if len(rows) < 2:
        raise LiandanError(f"csv {p}: needs a header row and at least one data row")
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if r]
    if target not in header:
        raise LiandanError(f"csv {p}: no target column {target!r}; columns: {', '.join(header)}")
    ti = header.index(target)
    feats = [h for i, h in enumerate(header) if i != ti]
    x = np.empty((len(body), len(feats)), np.float32)
    for r, row in enumerate(body):
        if len(row) != len(header):
            raise LiandanError(f"csv {p}: row {r + 2} has {len(row)} fields, header has {len(header)}")
        vals = [v for i, v in enumerate(row) if i != ti]
        try:
            x[r] = [float(v) if v.strip() else float("nan") for v in vals]
        except ValueError:
            bad = next(v for v in vals if not _is_float(v))
            raise LiandanError(f"csv {p}: row {r + 2}: non-numeric feature value {bad!r}") from None
    ys = [row[ti].strip() for row in body]
    numeric = all(_is_float(v) for v in ys)
    few_ints = numeric and all(float(v).is_integer() for v in ys) and len(set(ys)) <= 20
    kind = {"auto": CLASS if not numeric or few_ints else VALUE, "classify": CLASS, "regress": VALUE}.get(task)
    if kind is None:
        raise LiandanError(f"csv: task must be auto, classify or regress, got {task!r}")
    if kind == VALUE:
        if not numeric:
            raise LiandanError(f"csv {p}: regression target {target!r} has non-numeric values")
        return regression(x, np.array(ys, np.float32)[:, None], feature_names=feats)
    labels = np.array([int(float(v)) for v in ys]) if numeric else np.array(ys)
    return classification(x, labels, feature_names=feats)


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


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

        with open_checked(self.files[i], "rb", "image_folder file", roots=self.roots) as f, Image.open(f) as im:
            im = im.convert(self.mode)
            if self.size and im.size != (self.size, self.size):
                im = im.resize((self.size, self.size), Image.BILINEAR)
            a = np.asarray(im, dtype=np.float32) / 255.0
        return torch.from_numpy(a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy())

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.load(i)
        return (self.transform(x) if self.transform else x), self.labels[i]


@register_data("image_folder", tags=("image", "file"))
def image_folder(path: str, size: int | None = None, grayscale: bool = False) -> Source:
    """Class-per-folder images (root/<class>/*.png|jpg), decoded lazily; ``size`` resizes to size×size.

    Args:
        path: root folder with one sub-folder of .png/.jpg images per class (the folder names are the classes)
        size: resize every image to size×size pixels; None: keep the files' size (all must match)
        grayscale: decode as one grey channel instead of RGB
    """
    root = _existing(path, "image_folder")
    classes = sorted(d.name for d in check_tree(root.iterdir(), "image_folder entry") if d.is_dir())
    if not classes:
        raise LiandanError(f"image_folder {root}: no class sub-folders")
    files, labels = [], []
    for k, c in enumerate(classes):
        for f in sorted(check_tree((root / c).iterdir(), "image_folder file")):
            if f.suffix.lower() in IMAGE_EXT:
                files.append(f)
                labels.append(k)
    if not files:
        raise LiandanError(f"image_folder {root}: no images ({', '.join(IMAGE_EXT)}) in the class folders")
    ds = ImageFiles(files, torch.tensor(labels), size, grayscale)
    if size is None:  # every image must share one shape to batch: take the first one's
        ds.size = ds.load(0).shape[-1]
    return Source(y=ds.labels, task="classify", targets=CLASS, dataset=ds, num_classes=len(classes),
                  class_names=classes)


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
