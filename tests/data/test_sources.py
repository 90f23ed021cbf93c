"""Every registered data source loads, splits, normalises and batches (registry-driven)."""

from __future__ import annotations

import inspect
import pickle

import numpy as np
import pytest
import torch

from liandan.data import build_data
from liandan.errors import LiandanError
from liandan.recipe import DataConfig
from liandan.registry import DATA
from tests.data.samples import FILE_SOURCES, write_csv

SMALL = {"shapes": {"n": 200}, "spirals": {"n": 300}}


def _options(name: str, tmp_path) -> dict:
    entry = DATA.get(name)
    required = [n for n, p in entry.options().items() if p.default is inspect.Parameter.empty]
    if required:
        assert name in FILE_SOURCES, f"source {name!r} needs options: add a sample writer in tests/data/samples.py"
        return FILE_SOURCES[name](tmp_path)
    return SMALL.get(name, {})


@pytest.mark.parametrize("name", DATA.names())
def test_source_builds_batches(name: str, tmp_path) -> None:
    cfg = DataConfig(source=name, batch_size=8, **_options(name, tmp_path))
    dm = build_data(cfg, seed=0)
    info = dm.info
    assert sum(info.sizes.values()) == len(dm.source)
    # splits are disjoint and cover everything
    all_idx = np.concatenate(list(dm.indices.values()))
    assert len(np.unique(all_idx)) == len(all_idx) == len(dm.source)
    xb, yb = next(iter(dm.train.epoch(0)))
    assert tuple(xb.shape[1:]) == info.input_shape
    assert xb.dtype == torch.float32 or (info.vocab_size and xb.dtype == torch.int64)  # features or token ids
    assert torch.isfinite(xb).all()
    if info.task == "classify":
        assert yb.dtype == torch.int64 and int(dm.source.y.max()) < info.num_classes
    # normalisation statistics come from the training split only
    if info.x_mean is not None and dm.source.x is not None:
        train_x = info.normalize_x(dm.source.x[torch.as_tensor(dm.indices["train"])])
        # per channel for images, per feature for tables and sequences (N, T, F)
        dims = [0, 2, 3] if train_x.dim() == 4 else list(range(train_x.dim() - 1))
        assert train_x.mean(dims).abs().max() < 1e-3


def test_split_is_stratified_and_seeded() -> None:
    a = build_data(DataConfig(source="digits"), seed=0)
    b = build_data(DataConfig(source="digits"), seed=0)
    c = build_data(DataConfig(source="digits"), seed=1)
    assert all((a.indices[k] == b.indices[k]).all() for k in a.indices)
    assert not (a.indices["test"] == c.indices["test"]).all()
    counts = np.bincount(a.source.y.numpy()[a.indices["test"]], minlength=10)
    assert counts.min() >= 16 and counts.max() <= 20  # 180 test samples over 10 classes


def test_data_order_is_a_function_of_seed_and_epoch() -> None:
    dm = build_data(DataConfig(source="iris", batch_size=16, augment=["noise:0.1"]), seed=3)
    full = list(dm.train.epoch(2))
    resumed = list(dm.train.epoch(2, start=3))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(full[3:], resumed, strict=True))
    assert not torch.equal(full[0][0], list(dm.train.epoch(1))[0][0])


def test_augmentations_touch_train_only_and_keep_shape() -> None:
    dm = build_data(DataConfig(source="shapes", n=100, batch_size=10, augment=["hflip", "crop:4", "noise:0.05"]))
    x, _ = next(iter(dm.train.epoch(0)))
    assert x.shape == (10, 3, 32, 32)
    v1 = next(iter(dm.eval_batches("val").epoch(0)))[0]
    v2 = next(iter(dm.eval_batches("val").epoch(0)))[0]
    assert torch.equal(v1, v2)


def test_random_crop_is_a_shifted_copy() -> None:
    from liandan.data.loaders import _random_crop

    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    out = _random_crop(x, torch.Generator().manual_seed(0), pad=2)
    for b in range(2):  # every crop equals the padded image cut at some offset
        xp = torch.nn.functional.pad(x[b], (2, 2, 2, 2))
        assert any(torch.equal(out[b], xp[:, i : i + 6, j : j + 6]) for i in range(5) for j in range(5))


def test_nan_features_are_rejected(tmp_path) -> None:
    opts = write_csv(tmp_path, nan=True)
    with pytest.raises(LiandanError, match="NaN/inf"):
        build_data(DataConfig(source="csv", **opts))


def test_csv_errors(tmp_path) -> None:
    with pytest.raises(LiandanError, match="path not found"):
        build_data(DataConfig(source="csv", path=str(tmp_path / "missing.csv")))
    opts = write_csv(tmp_path)
    with pytest.raises(LiandanError, match="no target column 'y'.*columns: a, b, c, label"):
        build_data(DataConfig(source="csv", path=opts["path"], target="y"))


def test_csv_string_labels_become_classes(tmp_path) -> None:
    dm = build_data(DataConfig(source="csv", **write_csv(tmp_path)))
    assert dm.info.task == "classify" and dm.info.class_names == ["no", "yes"]


def test_mnist_and_cifar_keep_their_test_split(tmp_path) -> None:
    from tests.data.samples import write_cifar_batches, write_mnist_idx

    m = build_data(DataConfig(source="mnist_idx", **write_mnist_idx(tmp_path)))
    assert m.info.input_shape == (1, 28, 28) and m.info.sizes["test"] == 12
    c = build_data(DataConfig(source="cifar_batches", **write_cifar_batches(tmp_path)))
    assert c.info.input_shape == (3, 32, 32) and c.info.sizes["test"] == 10


def test_cifar_reader_refuses_code_in_pickles(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    d = tmp_path / "evil"
    d.mkdir()
    for name in ("data_batch_1", "test_batch"):
        (d / name).write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    with pytest.raises(LiandanError, match="refusing to load builtins.print"):
        build_data(DataConfig(source="cifar_batches", path=str(d)))
