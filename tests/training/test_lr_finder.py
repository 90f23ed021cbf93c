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


class _Trainer:
    status = "running"

    def optimizers(self) -> list:
        return []


def _sweep(losses: list[float]):
    from liandan.training.lr_finder import RangeTest

    test, trainer = RangeTest(1e-7, 10 ** 0.08, 100, 0.98, 4.0), _Trainer()
    for v in losses:
        test.on_batch_start(trainer, None, None)
        test.on_step_end(trainer, v, 1.0, True)
        if trainer.status == "completed":
            break
    return test


def test_range_test_stops_where_the_raw_loss_climbs_back_above_its_start() -> None:
    """Adam's sweep on a digits MLP: the loss settles near 0.9 (start 2.3), then one batch jumps to
    3.4 — the lagging EMA barely moves, but training broke at that rate, so the sweep ends there and
    names it. Batch noise is no descent: a flat start with one lucky batch (0.38 among values near
    1.2), or a fine-tune's low, scattered losses."""
    broke = _sweep([2.3] * 10 + [2.0, 1.5, 1.1, 0.9, 0.9, 0.95, 0.9, 0.88, 3.4] + [0.8] * 20)
    assert len(broke.lrs) == 19 and broke.diverged_at == pytest.approx(broke.lrs[-1])
    assert broke.smoothed[-1] < 4 * min(broke.smoothed)  # the EMA alone would have gone on
    noisy = _sweep([1.37, 1.58, 1.36, 1.14, 1.09, 1.03, 1.2, 1.36, 1.26, 1.07, 1.22, 0.38, 1.4] + [1.2] * 20)
    assert noisy.diverged_at is None and len(noisy.lrs) == 33
    # a fine-tune: batches scatter 0.04-0.19 around a low start, five in a row may sit at 0.05
    tune = _sweep([0.07, 0.07, 0.14, 0.10, 0.10, 0.19, 0.04, 0.14, 0.14, 0.05] + [0.04, 0.05, 0.06, 0.04, 0.05, 0.2])
    assert tune.diverged_at is None
    nan = _sweep([2.3] * 8 + [float("nan")])
    assert nan.diverged_at is not None and len(nan.lrs) == 8  # the skipped step's rate is where it broke
