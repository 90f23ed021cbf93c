"""`liandan predict` on the training file's own CSV format (header, target column), folders and
globs, and `--out preds.csv`."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import liandan


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    lines = ["a,colour,b,label"]
    for i in range(60):
        a, b = rng.normal(size=2)
        lines.append(f"{a:.4f},{['red', 'blue'][i % 2]},{b:.4f},{'yes' if a + b > 0 else 'no'}")
    (root / "data.csv").write_text("\n".join(lines) + "\n")
    rec = {"data": {"source": "csv", "path": str(root / "data.csv"), "target": "label",
                    "columns": {"colour": "categorical"}},
           "model": {"name": "mlp"}, "train": {"epochs": 2}, "doctor": {"enabled": False}}
    run = liandan.train(rec, out=root / "run", quiet=True)
    return root, run


def test_csv_with_header_matches_columns_by_name(csv_run, cli) -> None:
    root, run = csv_run
    # columns reordered, target present: matched by name, the target ignored
    (root / "new.csv").write_text("label,b,colour,a\nyes,1.5,red,2.0\nno,-1.0,blue,-2.0\n")
    code, out, err = cli("predict", str(run.dir), str(root / "new.csv"))
    assert code == 0, err
    assert out.splitlines()[0].startswith(f"{root / 'new.csv'}[0]: yes")
    (root / "bad.csv").write_text("a,colour\n1,red\n")
    code, _, err = cli("predict", str(run.dir), str(root / "bad.csv"))
    assert code == 2 and err.startswith("error:") and "no column 'b'" in err


def test_folder_glob_and_out_csv(csv_run, cli) -> None:
    root, run = csv_run
    d = root / "batch"
    d.mkdir()
    (d / "x1.csv").write_text("a,colour,b\n2,red,1\n")
    (d / "x2.csv").write_text("a,colour,b\n-2,blue,-1\n-3,red,-1\n")
    code, _, err = cli("predict", str(run.dir), str(d), "--out", str(root / "preds.csv"))
    assert code == 0, err
    rows = list(csv.reader((root / "preds.csv").open()))
    assert rows[0] == ["input", "prediction", "probability"] and len(rows) == 4
    assert [r[1] for r in rows[1:]] == ["yes", "no", "no"]
    code, out, _ = cli("predict", str(run.dir), str(d / "x*.csv"))
    assert code == 0 and len(out.splitlines()) == 3
