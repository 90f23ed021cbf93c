"""CSV sources say what they inferred, refuse blank cells by policy, take declared column types and
their own val/test splits (files or a split column)."""

from __future__ import annotations

import numpy as np
import pytest

from liandan.data.pipeline import build_data
from liandan.errors import LiandanError
from liandan.recipe import DataConfig


def _regression_csv(path, n=60, blank_row=None, extra=None):
    rng = np.random.default_rng(0)
    lines = ["a,b,colour,price" + (",split" if extra else "")]
    for i in range(n):
        a, b = rng.normal(size=2)
        y = "" if i == blank_row else f"{3 * a + b + 100.123 * i:.3f}"
        lines.append(f"{a:.4f},{b:.4f},{['red', 'green', 'blue'][i % 3]},{y}" + (f",{extra(i)}" if extra else ""))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_blank_target_cell_is_an_error_naming_column_and_row(tmp_path) -> None:
    p = _regression_csv(tmp_path / "d.csv", blank_row=7)
    with pytest.raises(LiandanError, match=r"column 'price' has 1 blank cells \(rows 9\).*data.missing: drop"):
        build_data(DataConfig(source="csv", path=p, target="price", columns={"colour": "categorical"}))


def test_missing_drop_keeps_regression_and_reports(tmp_path) -> None:
    p = _regression_csv(tmp_path / "d.csv", blank_row=7)
    dm = build_data(DataConfig(source="csv", path=p, target="price", missing="drop",
                               columns={"colour": "categorical"}))
    assert dm.info.task == "regress" and sum(dm.info.sizes.values()) == 59
    line = dm.info.describe()
    assert line.startswith("data: csv: task regress, 1 target, 3 feature columns (5 inputs); rows train")
    assert "dropped 1 rows with blank cells (price)" in line


def test_categorical_columns_are_one_hot_and_text_needs_declaring(tmp_path) -> None:
    p = _regression_csv(tmp_path / "d.csv")
    with pytest.raises(LiandanError, match="column 'colour' row 2: non-numeric value 'red'.*colour: categorical"):
        build_data(DataConfig(source="csv", path=p, target="price"))
    dm = build_data(DataConfig(source="csv", path=p, target="price", columns={"colour": "categorical"},
                               normalize=False))
    assert dm.source.feature_names == ["a", "b", "colour=blue", "colour=green", "colour=red"]
    assert dm.source.x[:3, 2:].tolist() == [[0, 0, 1], [0, 1, 0], [1, 0, 0]]
    assert dm.info.extras["categories"] == {"colour": ["blue", "green", "red"]}


def test_classifier_line_names_the_classes(tmp_path) -> None:
    from tests.data.samples import write_csv

    dm = build_data(DataConfig(source="csv", **write_csv(tmp_path)))
    assert dm.info.describe().startswith("data: csv: task classify, 2 classes, 3 feature columns (3 inputs); "
                                         "rows train 48 / val 6 / test 6")


def test_training_prints_what_was_inferred(tmp_path, capsys) -> None:
    import liandan
    from tests.data.samples import write_csv

    rec = {"data": {"source": "csv", **write_csv(tmp_path)}, "model": {"name": "mlp"},
           "train": {"epochs": 1}, "doctor": {"enabled": False}}
    liandan.train(rec, out=tmp_path / "r")
    assert "data: csv: task classify, 2 classes" in capsys.readouterr().err


def test_separate_val_and_test_files(tmp_path) -> None:
    tr = _regression_csv(tmp_path / "train.csv", n=30)
    va = _regression_csv(tmp_path / "val.csv", n=7)
    te = _regression_csv(tmp_path / "test.csv", n=5)
    dm = build_data(DataConfig(source="csv", path=tr, val=va, test=te, target="price",
                               columns={"colour": "categorical"}))
    assert dm.info.sizes == {"train": 30, "val": 7, "test": 5}
    assert dm.indices["val"].tolist() == list(range(30, 37))


def test_split_column(tmp_path) -> None:
    p = _regression_csv(tmp_path / "d.csv", n=20, extra=lambda i: ["train", "val", "test", "train"][i % 4])
    dm = build_data(DataConfig(source="csv", path=p, target="price", split_column="split",
                               columns={"colour": "categorical"}))
    assert dm.info.sizes == {"train": 10, "val": 5, "test": 5}
    assert "split" not in dm.source.feature_names
    bad = _regression_csv(tmp_path / "bad.csv", n=20, extra=lambda i: "dev")
    with pytest.raises(LiandanError, match="split_column 'split' value 'dev'; use train, val or test"):
        build_data(DataConfig(source="csv", path=bad, target="price", split_column="split",
                              columns={"colour": "categorical"}))
