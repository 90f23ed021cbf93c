"""LR range test: the suggestion for digits-lenet lies within 10× of the preset's 3e-3, a rate
that trains it to ≥ 0.97 test accuracy (tests/training/test_core_runs.py)."""

from __future__ import annotations

import csv

import pytest

import liandan


def test_lr_find_digits_lenet(tmp_path, cli) -> None:
    res = liandan.lr_find("digits-lenet", overrides=["doctor.enabled=false"], out=tmp_path)
    assert 3e-4 <= res.suggestion <= 3e-2, res.suggestion
    rows = list(csv.DictReader(open(res.csv_path)))
    assert len(rows) == len(res.lrs) >= 20 and float(rows[1]["lr"]) > float(rows[0]["lr"])
    assert res.plot_path is not None and res.plot_path.stat().st_size > 5000
    code, _, err = cli("lr-find", "digits-lenet", "--start-lr", "1", "--end-lr", "0.1")
    assert code == 2 and err.startswith("error: lr-find")


@pytest.mark.slow
def test_a_flat_sweep_is_extended_until_the_loss_descends() -> None:
    """LeNet-5 under Adam on digits barely moves in 100 steps over eight decades (a 1.7 % drop: no
    opinion); the 400-step sweep descends and turns up, and its suggestion lies in the rates that
    train this model (the digits-lenet preset trains at 3e-3)."""
    recipe = {"data": {"source": "digits"}, "model": {"name": "lenet5"}, "optim": {"name": "adam", "lr": 0.05},
              "train": {"threads": 1}, "report": False}
    flat = liandan.lr_find(recipe, extend=1)
    assert not flat.informative and len(flat.lrs) <= 100
    res = liandan.lr_find(recipe)
    assert res.informative and len(res.lrs) > 100
    assert 1e-3 <= res.suggestion <= 3e-2 and res.usable[1] < 0.05  # the case's 0.05 lies above the range


def test_the_suggestion_ignores_a_noise_dip_in_the_flat_start() -> None:
    """A dip below the descent bar early in the flat start (batch noise) has the steepest slope of
    all; the suggestion must come from the stretch that descends into the minimum."""
    import numpy as np

    from liandan.training.lr_finder import suggest

    lrs = list(np.logspace(-7, 1, 100))
    y = np.ones(100)
    y[20:25] = [0.95, 0.80, 0.78, 0.95, 1.0]  # a sharp dip at ~1e-5, back to the plateau
    y[60:80] = np.linspace(1.0, 0.5, 20)  # the real descent, 1.4e-2 .. 4e-1
    y[80:] = np.linspace(0.5, 3.0, 20)  # past the minimum it diverges
    s = suggest(lrs, list(y))
    assert lrs[60] <= s <= lrs[80], s


def test_a_lucky_first_batch_is_not_the_minimum() -> None:
    """The EMA's first value is the first batch's loss; one low batch there must not become the
    curve's minimum (the suggestion would be the sweep's smallest rate)."""
    import numpy as np

    from liandan.training.lr_finder import informative, minimum, suggest

    lrs = list(np.logspace(-7, 1, 100))
    y = np.ones(100)
    y[:4] = [0.6, 0.8, 0.9, 0.95]  # the warm-up: a lucky first batch
    y[60:80] = np.linspace(1.0, 0.7, 20)  # the descent reaches 0.7, above the first batch's 0.6
    y[80:] = np.linspace(0.7, 3.0, 20)
    assert minimum(list(y)) == 79 and informative(list(y))
    assert lrs[60] <= suggest(lrs, list(y)) <= lrs[80]
