"""The repair judge scores every task, and what it scores is the model the run trained: a language
model by its own validation pass (the summary's val loss, to 1e-6), a model with a planted output
head with that head (the bench's faults are part of ``run.model``, not only of the loop)."""

from __future__ import annotations

import math

import pytest
import torch

import liandan
from liandan.doctor.bench import injector
from liandan.doctor.judge import improved, judge_metrics
from liandan.doctor.repair import worse
from liandan.registry import TASKS
from tests.training.test_every_task_short_runs import (  # noqa: F401 (pretrained_recipes: a fixture)
    PRESET_TASKS,
    PRETRAINED_TASKS,
    preset_of_task,
    pretrained_recipes,
    small,
)

BASE = {"train.tensorboard": False, "train.threads": 1, "report": False, "doctor.enabled": False}
LM = {"name": "judge-lm", "data": {"source": "arith", "n": 200},
      "model": {"name": "gpt", "size": "tiny", "layers": 1, "dim": 32, "heads": 2}, "train": {"epochs": 1}}


def _judge(run) -> dict:
    return judge_metrics(run.model, run.data, run.info, run.recipe)


def test_judge_scores_a_language_model_by_its_own_validation(tmp_path) -> None:
    """(B, T, V) logits against (B, T) targets with -100: the task's token-weighted loss, as the run's summary."""
    run = liandan.train(LM, overrides=BASE, out=tmp_path / "lm", quiet=True)
    m, val = _judge(run), run.summary["final"]["val"]
    assert m["name"] == "loss" and m["higher"] is False  # lm's headline is its loss: lower is better
    assert math.isfinite(m["metric"]) and m["metric"] == pytest.approx(val["loss"], rel=1e-6, abs=1e-6)
    assert m["loss"] == pytest.approx(val["loss"], rel=1e-6, abs=1e-6)
    assert m["n"] == run.info.sizes["val"]


def test_improved_and_worse_follow_the_metric_direction() -> None:
    lower = {"name": "loss", "n": 40, "higher": False}
    assert improved({**lower, "metric": 2.0, "loss": 2.0}, {**lower, "metric": 2.5, "loss": 2.5})
    assert not improved({**lower, "metric": 2.5, "loss": 2.5}, {**lower, "metric": 2.0, "loss": 2.0})
    assert worse({**lower, "metric": 2.5, "loss": 2.5}, {**lower, "metric": 2.0, "loss": 2.0})
    assert not worse({**lower, "metric": 2.0, "loss": 2.0}, {**lower, "metric": 2.5, "loss": 2.5})
    higher = {"name": "f1", "n": 40, "higher": True}
    assert improved({**higher, "metric": 0.8, "loss": 1.0}, {**higher, "metric": 0.5, "loss": 1.0})
    assert worse({**higher, "metric": 0.5, "loss": 1.0}, {**higher, "metric": 0.8, "loss": 1.0})
    # a judge document from before the direction existed (no "higher") reads as higher-is-better
    assert improved({"name": "accuracy", "n": 100, "metric": 0.9, "loss": 0.3},
                    {"name": "accuracy", "n": 100, "metric": 0.5, "loss": 0.9})


@pytest.mark.parametrize(("recipe", "key"), [
    ({"name": "judge-softmax-ce", "data": {"source": "digits"}, "model": {"name": "mlp", "hidden": [32]},
      "train": {"epochs": 2}}, "accuracy"),
    ({"name": "judge-softmax-one", "data": {"source": "diabetes"}, "model": {"name": "mlp", "hidden": [16]},
      "train": {"epochs": 2}}, "r2"),
], ids=["cross_entropy", "one_output"])
def test_planted_head_is_part_of_the_returned_model(recipe, key, tmp_path) -> None:
    """softmax_head: run.model outputs probabilities (or the constant 1 over one output), and the judge
    scores exactly what the run's final validation scored: metric and loss."""
    run = liandan.train(recipe, overrides=BASE, out=tmp_path / "run", quiet=True, callbacks=injector("softmax_head")())
    x, _ = next(iter(run.data.eval_batches("val").epoch(0)))
    with torch.no_grad():
        out = run.model(x)  # (B, K) or (B, 1)
    assert torch.allclose(out.sum(-1), torch.ones(len(x)), atol=1e-5)  # the head is in the model
    m, val = _judge(run), run.summary["final"]["val"]
    assert m["name"] == key and m["metric"] == pytest.approx(val[key], abs=1e-6)
    if key == "accuracy":  # cross-entropy of the probabilities: the run's val loss, not that of the logits
        assert m["loss"] == pytest.approx(val["loss"], rel=1e-6)
    else:  # a constant prediction explains nothing: R² ≤ 0 by far (the mean is 0, the prediction 1)
        assert m["metric"] < -0.5


@pytest.mark.slow
def test_repair_rounds_judge_the_planted_head(tmp_path) -> None:
    """Repair with the bench's injection (softmax over one output, MAE: SO 45442843): round 0 and the
    retrained round are judged with the head planted again — no recipe patch removes an injection —
    so each round's judge R² is that round's own final val R², the R² of the constant prediction the
    head makes (standardised targets, mean 0 and sd 1, against the constant 1: about -1.1, where a
    model without the head scores about 0 or better)."""
    from liandan.doctor.findings import Finding, Fix
    from liandan.doctor.memory import Memory
    from liandan.doctor.repair import repair
    from liandan.runs import read_json

    recipe = {"name": "judge-so45442843", "data": {"source": "sine", "n": 1200, "length": 20},
              "model": {"name": "mlp", "hidden": [16], "activation": "sigmoid"}, "loss": {"name": "l1"},
              "optim": {"name": "rmsprop", "lr": 1.0e-3}, "train": {"epochs": 6}}
    ov = {k: v for k, v in BASE.items() if k != "doctor.enabled"}
    cbs = injector("softmax_head")
    run = liandan.train(recipe, overrides=ov, out=tmp_path / "round-0", quiet=True, callbacks=cbs())
    # a finding with a patch that certainly retrains (whatever the rules say of this run)
    found = [Finding("underfitting", "warning", None, None, {}, [], [Fix("raise the rate", {"optim.lr": 3.0e-3})])]
    rep = repair(recipe, ov, rounds=1, out=tmp_path, memory=Memory(tmp_path / "memory.db"),
                 baseline=(run.dir, found, _judge(run)), callbacks=cbs)
    assert len(rep["rounds"]) == 2 and "error" not in rep["rounds"][1], rep["rounds"]
    for i, r in enumerate(rep["rounds"]):
        val = read_json(tmp_path / f"round-{i}" / "summary.json")["final"]["val"]["r2"]
        assert r["val"] == pytest.approx(val, abs=1e-5) and r["val"] < -0.5, (i, r["val"], val)


def test_every_task_is_covered_by_a_short_run() -> None:
    """Every registered task is judged below, but those trained only from a finished run (the reward
    model's pairs, GRPO's rollouts): they have no preset (tests/llm/ drives them)."""
    from_run = {t for t in TASKS.names() if "from_run" in TASKS.get(t).tags}
    assert set(PRESET_TASKS) | set(PRETRAINED_TASKS) == set(TASKS.names()) - from_run


@pytest.mark.slow
@pytest.mark.parametrize("task", PRESET_TASKS + PRETRAINED_TASKS)
def test_judge_returns_a_metric_for_every_task(task: str, pretrained_recipes, tmp_path) -> None:  # noqa: F811
    if task in PRETRAINED_TASKS:
        recipe, ov = pretrained_recipes[task], {}
    else:
        recipe = preset_of_task()[task]
        ov = small(recipe)
    run = liandan.train(recipe, overrides={**BASE, **ov, "train.epochs": 1, "train.max_steps": 2},
                        out=tmp_path / "run", quiet=True)
    m = _judge(run)
    head = TASKS.get(task).fn.headline_metric
    assert m["name"] in {head, "accuracy", "r2"}, m  # classification / regression: the judge's own scores
    assert m["metric"] is not None and math.isfinite(m["metric"]), m
    assert m["loss"] is not None and math.isfinite(m["loss"]), m


@pytest.mark.slow
def test_judge_counts_the_responses_whatever_the_run_learned(tmp_path) -> None:
    """A chat run that learned its prompts (data.train_on_prompt: true) is judged on the response
    tokens, like one that did not: the score of a model does not depend on the option its recipe
    trained with, so repair can compare the two (sft_prompt_loss's fix)."""
    from liandan.data.pipeline import build_data
    from liandan.recipe import load_recipe

    chat = {"name": "judge-chat", "data": {"source": "instructions", "n": 200, "system": 8, "train_on_prompt": True},
            "model": {"name": "gpt", "size": "tiny", "layers": 1, "dim": 32, "heads": 2}, "train": {"epochs": 1}}
    run = liandan.train(chat, overrides=BASE, out=tmp_path / "chat", quiet=True)
    own = run.summary["final"]["val"]["loss"]  # over prompt and response tokens
    responses = load_recipe(run.recipe, {"data.train_on_prompt": False})
    data = build_data(responses.data, responses.seed, responses.task)
    m, ref = _judge(run), judge_metrics(run.model, data, data.info, responses)
    assert m["metric"] == pytest.approx(ref["metric"], rel=1e-6) and m["n"] == ref["n"]
    assert abs(m["metric"] - own) > 0.05  # not the run's own validation loss, which counts the prompts
