"""LR range test: the suggestion for digits-lenet lies within 10× of the preset's 3e-3, a rate
that trains it to ≥ 0.97 test accuracy (tests/training/test_core_runs.py)."""

from __future__ import annotations

import csv

import liandan


def test_lr_find_digits_lenet(tmp_path, cli) -> None:
    res = liandan.lr_find("digits-lenet", overrides=["doctor.enabled=false"], out=tmp_path)
    assert 3e-4 <= res.suggestion <= 3e-2, res.suggestion
    rows = list(csv.DictReader(open(res.csv_path)))
    assert len(rows) == len(res.lrs) >= 20 and float(rows[1]["lr"]) > float(rows[0]["lr"])
    assert res.plot_path is not None and res.plot_path.stat().st_size > 5000
    code, _, err = cli("lr-find", "digits-lenet", "--start-lr", "1", "--end-lr", "0.1")
    assert code == 2 and err.startswith("error: lr-find")
