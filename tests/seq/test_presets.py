"""The sequence presets, trained for fewer epochs than the full presets (whose numbers are in
the issue notes), against the baselines they must beat."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import liandan
from liandan.data.pipeline import build_data
from liandan.training.run import load_run

PRESETS = ["sine-lstm", "adding-peephole_lstm", "digits-vit", "digits-moe"]
FAST = ["doctor.enabled=false", "train.tensorboard=false", "report=false"]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_opens_with_its_launch_command(name: str) -> None:
    text = (Path(liandan.__file__).parent / "presets" / f"{name}.yaml").read_text().splitlines()
    assert text[0] == f"# liandan train {name}" and text[1].startswith("# ") and len(text[1]) > 20


def _test_predictions(out: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(raw test windows, targets, predictions in target units) of a finished run."""
    run = load_run(out)
    data = build_data(run.recipe.data, run.recipe.seed, run.recipe.task)
    idx = torch.as_tensor(data.indices["test"])
    x, y = data.source.x[idx], data.source.y[idx]
    with torch.no_grad():
        pred = data.info.denormalize_y(run.model(data.info.normalize_x(x)))
    return x, y, pred


def test_sine_lstm_beats_the_last_value_baseline(tmp_path) -> None:
    liandan.train("sine-lstm", overrides=[*FAST, "train.epochs=5"], out=tmp_path / "r", quiet=True)
    x, y, pred = _test_predictions(tmp_path / "r")
    mse = float(((pred - y) ** 2).mean())
    last_value = float(((x[:, -1, :] - y) ** 2).mean())  # "tomorrow = today"
    assert mse < 0.6 * last_value, (mse, last_value)  # full preset (30 epochs): 0.0059 vs 0.0242


@pytest.mark.slow
def test_adding_peephole_lstm_remembers_over_50_steps(tmp_path) -> None:
    liandan.train("adding-peephole_lstm", overrides=[*FAST, "data.n=4000", "train.epochs=6"], out=tmp_path / "r",
                  quiet=True)
    x, y, pred = _test_predictions(tmp_path / "r")
    assert x.shape[1] >= 50
    mse = float(((pred - y) ** 2).mean())
    baseline = float(((y - 1.0) ** 2).mean())  # predicting the mean: ≈ 1/6
    hit = float(((pred - y).abs() < 0.04).float().mean())  # Hochreiter & Schmidhuber's criterion
    chance = float(((y - 1.0).abs() < 0.04).float().mean())  # ≈ 0.08
    assert mse < baseline / 5 and hit > 3 * chance, (mse, baseline, hit, chance)  # full preset: 0.987 vs 0.087


@pytest.mark.slow
def test_digits_vit_learns(tmp_path) -> None:
    run = liandan.train("digits-vit", overrides=[*FAST, "train.epochs=8"], out=tmp_path / "r", quiet=True)
    acc = run.summary["final"]["test"]["accuracy"]
    assert acc >= 0.5, acc  # chance 0.1; 8 epochs reach ≈ 0.67, the full preset (40 epochs) 0.96
