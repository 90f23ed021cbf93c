"""lr-find and the doctor's recipe check go through the one trainer, so they work for a preset of
every registered task (lm, gan, diffusion, ... own their loss; a GAN steps two optimizers)."""

from __future__ import annotations

import functools
import math

import pytest

import liandan
from liandan.data.pipeline import build_data
from liandan.recipe import load_recipe, preset_names
from liandan.registry import DATA, TASKS

# Tasks that train only on what a finished run makes (the reward model's pairs, GRPO's rollouts)
# have no preset of their own: liandan reward-model / grpo drive them through the same trainer.
PRESET_TASKS = [t for t in TASKS.names() if "from_run" not in TASKS.get(t).tags]


def small(preset: str) -> dict:
    """Generated sources make 400 samples: what is tested is the plumbing, not the curve."""
    return {"data.n": 400} if "n" in DATA.get(load_recipe(preset).data.source).options() else {}


@functools.cache
def preset_of_task() -> dict[str, str]:
    found: dict[str, str] = {}
    for p in preset_names():
        rc = load_recipe(p, small(p))
        task = build_data(rc.data, rc.seed, rc.task).info.task
        found.setdefault(task, p)
    return found


def test_every_task_has_a_preset() -> None:
    assert set(preset_of_task()) == set(PRESET_TASKS)


@pytest.mark.parametrize("task", PRESET_TASKS)
def test_lr_find_runs_for_every_task(task: str, tmp_path) -> None:
    preset = preset_of_task()[task]
    res = liandan.lr_find(preset, overrides=small(preset), num_steps=12, out=tmp_path)
    assert 5 <= len(res.lrs) <= 12 and all(b > a for a, b in zip(res.lrs, res.lrs[1:], strict=False))
    assert all(math.isfinite(v) for v in res.losses)
    assert res.lrs[0] <= res.suggestion <= res.lrs[-1]
    assert res.csv_path.read_text().count("\n") == len(res.lrs) + 1


@pytest.mark.parametrize("task", PRESET_TASKS)
@pytest.mark.slow
def test_doctor_recipe_runs_for_every_task(task: str, tmp_path, cli) -> None:
    import json

    preset = preset_of_task()[task]
    sets = [a for k, v in small(preset).items() for a in ("--set", f"{k}={v}")]
    code, out, err = cli("doctor", preset, *sets, "--set", "train.threads=1", "--json")
    assert code == 0, err
    doc = json.loads(out)
    check = doc["overfit_check"]
    assert doc["mode"] == "probe" and check["steps"] >= 1 and math.isfinite(check["loss_start"])
