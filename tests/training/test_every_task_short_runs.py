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
# Tasks of pre-trained models (tag "pretrained") need the user's model and records: they run on a
# tiny save_pretrained model and generated records written here (PRETRAINED_RECIPES).
PRESET_TASKS = [t for t in TASKS.names() if not {"from_run", "pretrained"} & set(TASKS.get(t).tags)]
PRETRAINED_TASKS = [t for t in TASKS.names() if "pretrained" in TASKS.get(t).tags]


@pytest.fixture(scope="module")
def pretrained_recipes(tmp_path_factory) -> dict[str, dict]:
    """A recipe per pre-trained task: a tiny model of the right kind and records in its schema."""
    from tests.data.test_records import chats, jsonl, labelled
    from tests.models import hf_tiny

    root = tmp_path_factory.mktemp("pretrained")
    bert, qwen = hf_tiny.write(root, "bert"), hf_tiny.write(root, "qwen2")
    recipes = {
        "text_classify": {"data": {"source": "records", "path": jsonl(root / "l.jsonl", labelled(48))},
                          "model": {"name": "hf", "path": str(bert)}},
        "sft": {"data": {"source": "records", "path": jsonl(root / "c.jsonl", chats(48)), "packing": True},
                "model": {"name": "hf", "path": str(qwen)}},
    }
    from tests.data import test_span_records as spans  # a WordPiece BERT: names split into sub-tokens

    wp = str(spans.write_bert(root))
    recipes["token_classify"] = {"task": "token_classify", "model": {"name": "hf", "path": wp},
                                 "data": {"source": "records", "path": jsonl(root / "n.jsonl", spans.ner_records(48))}}
    recipes["extractive_qa"] = {"task": "extractive_qa", "model": {"name": "hf", "path": wp},
                                "data": {"source": "records", "path": jsonl(root / "q.jsonl", spans.qa_records(48))}}
    for r in recipes.values():
        r["data"]["batch_size"] = 8
    return recipes


def test_every_pretrained_task_has_a_recipe(pretrained_recipes) -> None:
    assert set(pretrained_recipes) == set(PRETRAINED_TASKS)


@pytest.mark.parametrize("task", PRETRAINED_TASKS)
def test_lr_find_runs_for_every_pretrained_task(task: str, pretrained_recipes, tmp_path) -> None:
    # the plumbing in 12 steps; no repeat of a flat sweep (tests/training/test_lr_finder.py tests that)
    res = liandan.lr_find(pretrained_recipes[task], num_steps=12, out=tmp_path, extend=1)
    assert 5 <= len(res.lrs) <= 12 and all(math.isfinite(v) for v in res.losses)
    assert res.lrs[0] <= res.suggestion <= res.lrs[-1]


@pytest.mark.parametrize("task", PRETRAINED_TASKS)
@pytest.mark.slow
def test_doctor_recipe_runs_for_every_pretrained_task(task: str, pretrained_recipes, tmp_path, cli) -> None:
    import json

    import yaml

    (tmp_path / "r.yaml").write_text(yaml.safe_dump(pretrained_recipes[task]))
    code, out, err = cli("doctor", str(tmp_path / "r.yaml"), "--set", "train.threads=1", "--json")
    assert code == 0, err
    check = json.loads(out)["overfit_check"]
    assert check["steps"] >= 1 and math.isfinite(check["loss_start"])


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
    res = liandan.lr_find(preset, overrides=small(preset), num_steps=12, out=tmp_path, extend=1)  # see above
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
