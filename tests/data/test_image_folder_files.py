"""Image folders: train/val/test sub-folders give the splits; corrupt files are named or skipped."""

from __future__ import annotations

import numpy as np
import pytest

from liandan.data.pipeline import build_data
from liandan.errors import LiandanError
from liandan.recipe import DataConfig
from tests.data.samples import write_image_folder


def _png(path, shade: float) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), int(255 * shade), np.uint8)).save(path)


def test_train_val_test_subfolders_are_the_splits(tmp_path) -> None:
    root = tmp_path / "imgs"
    for split, n in (("train", 5), ("val", 2), ("test", 3)):
        for k, c in enumerate(("cat", "dog")):
            for i in range(n):
                _png(root / split / c / f"{i}.png", 0.2 + 0.5 * k + 0.01 * i)
    dm = build_data(DataConfig(source="image_folder", path=str(root)))
    assert dm.info.class_names == ["cat", "dog"]
    assert dm.info.sizes == {"train": 10, "val": 4, "test": 6}
    files = dm.source.dataset.files
    assert all(files[i].parts[-3] == "val" for i in dm.indices["val"])


def test_corrupt_and_truncated_images_are_named(tmp_path) -> None:
    opts = write_image_folder(tmp_path)
    good = (tmp_path / "imgs" / "cat" / "0.png").read_bytes()
    (tmp_path / "imgs" / "cat" / "trunc.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(LiandanError, match=r"cannot decode .*trunc\.png.*on_bad_file: skip"):
        build_data(DataConfig(source="image_folder", **opts))
    (tmp_path / "imgs" / "dog" / "junk.png").write_bytes(b"not a png at all")
    dm = build_data(DataConfig(source="image_folder", on_bad_file="skip", **opts))
    assert sum(dm.info.sizes.values()) == 12
    assert "skipped 2 unreadable image files" in dm.info.describe()
