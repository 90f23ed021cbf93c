"""Small files in each supported format, written by the tests (no downloads)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def write_csv(root: Path, n: int = 60, nan: bool = False) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    rows = [f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{'yes' if t else 'no'}" for r, t in zip(x, y, strict=True)]
    lines = ["a,b,c,label", *rows]
    if nan:
        lines[5] = "nan,1,2,yes"
    p = root / "data.csv"
    p.write_text("\n".join(lines) + "\n")
    return {"path": str(p), "target": "label"}


def write_image_folder(root: Path, per_class: int = 6) -> dict:
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(["cat", "dog"]):
        d = root / "imgs" / name
        d.mkdir(parents=True)
        for i in range(per_class):
            a = (rng.uniform(0, 0.3, (12, 12, 3)) + 0.6 * k) * 255
            Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(d / f"{i}.png")
    return {"path": str(root / "imgs")}


def _idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(str(path) + (".gz" if gz else ""), "wb").write(data)


def write_mnist_idx(root: Path) -> dict:
    rng = np.random.default_rng(0)
    d = root / "mnist"
    d.mkdir()
    for prefix, n in (("train", 40), ("t10k", 12)):
        _idx(d / f"{prefix}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28)), gz=prefix == "train")
        _idx(d / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, gz=False)
    return {"path": str(d)}


def write_cifar_batches(root: Path) -> dict:
    rng = np.random.default_rng(0)
    d = root / "cifar"
    d.mkdir()
    for name, n in (("data_batch_1", 30), ("data_batch_2", 30), ("test_batch", 10)):
        batch = {b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), b"labels": list(np.arange(n) % 10)}
        batch[b"labels"] = [int(v) for v in batch[b"labels"]]
        with open(d / name, "wb") as f:
            pickle.dump(batch, f)
    return {"path": str(d)}


def write_text(root: Path) -> dict:
    p = root / "corpus.txt"
    p.write_text("\n".join(f"sample line {i} of a small corpus" for i in range(40)) + "\n")
    return {"path": str(p), "max_len": 16}


def write_records(root: Path, n: int = 60) -> dict:
    """Labelled texts as JSONL with a tiny BERT's tokenizer directory (what model: hf fills in)."""
    import json

    from tests.models.hf_tiny import sentences, write

    tok_dir = write(root, "bert")
    lines = [json.dumps({"text": t, "label": ["pos", "neg", "mixed"][i % 3]}) for i, t in enumerate(sentences(n))]
    p = root / "records.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return {"path": str(p), "tokenizer": str(tok_dir)}


FILE_SOURCES = {
    "records": write_records,
    "text": write_text,
    "csv": write_csv,
    "image_folder": write_image_folder,
    "mnist_idx": write_mnist_idx,
    "cifar_batches": write_cifar_batches,
}
