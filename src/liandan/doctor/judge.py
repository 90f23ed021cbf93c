"""The repair judge: one validation metric computed the same way for every candidate, whatever
loss or task the candidate trains with.

A fix may change the loss (BCE → cross-entropy) or the task (regression on class ids →
classification), so the recipe's own validation loss cannot compare those candidates. For the
two task families such fixes move between, the judge scores the model's outputs itself:
- classification: accuracy, and the cross-entropy of softmax(output) as a proper score for ties;
- regression on class ids: accuracy of the rounded prediction (comparable with the
  classification fix), MSE in standardised units for ties;
- regression: R², and MSE in standardised units.
Every other task (lm, mlm, sft, token_classify, extractive_qa, gan, diffusion, contrastive,
caption, the reward model, GRPO, a plugin's) is asked itself: its own validation pass
(:func:`liandan.training.loop.evaluate` with the task's forward, loss and tally), whose
``headline_metric`` is the metric and whose ``loss`` breaks ties — the numbers the run's summary
reports for its val split (exactly, but for the noise a GAN or a diffusion model draws).
``higher`` says which way the metric improves (a task whose headline is its loss: lower), so
:func:`improved` compares any of them. A task's ``judge_data`` options hold for every candidate
(sft: responses only), so a fix that changes what the loss counts does not change what is judged.
"""

from __future__ import annotations

import math
from typing import Any

TOL_WORSE, MIN_GAIN, LOSS_GAIN = 0.01, 0.005, 0.02


def judge_metrics(model: Any, data: Any, info: Any, recipe: Any = None) -> dict[str, Any]:
    """{"name", "metric", "loss", "n", "higher"} of ``model`` on the validation split (train if
    there is none). ``recipe`` (the run's) builds the task's loss for tasks scored by their own
    validation pass; without it the task's default loss is used."""
    from liandan.training.tasks import task_class

    split = "val" if data.val is not None else "train"
    cls = task_class(info.task)
    if cls.is_classification or cls.is_regression:
        return _output_metrics(model, data, info, split, cls.is_classification)
    return _task_metrics(model, data, info, recipe, split)


def _output_metrics(model: Any, data: Any, info: Any, split: str, classify: bool) -> dict[str, Any]:
    """Classification and regression scored from the outputs alone (comparable across a loss or task change)."""
    import torch
    import torch.nn.functional as F

    was = model.training
    model.eval()
    outs, ys = [], []
    try:
        with torch.no_grad():
            dev = next(model.parameters()).device
            for xb, yb in data.eval_batches(split).epoch(0):
                outs.append(model(xb.to(dev)).float().cpu())  # (B, K) logits or (B, D) values
                ys.append(yb)
    finally:
        model.train(was)
    out, y = torch.cat(outs), torch.cat(ys)
    n = len(y)
    if not torch.isfinite(out).all():
        return {"name": "accuracy" if classify or info.class_names else "r2",
                "metric": None, "loss": None, "n": n, "higher": True}
    if classify:
        return {"name": "accuracy", "metric": float((out.argmax(-1) == y).float().mean()),
                "loss": float(F.cross_entropy(out, y)), "n": n, "higher": True}
    t = y.float().view_as(out)
    mse = float(((out - t) ** 2).mean())
    if info.class_names:  # class ids regressed: score the rounded prediction as a class
        pred, true = info.denormalize_y(out), info.denormalize_y(t)
        return {"name": "accuracy", "metric": float((pred.round() == true.round()).float().mean()), "loss": mse,
                "n": n, "higher": True}
    sst = float(((t - t.mean(0)) ** 2).mean())
    r2 = 1.0 - mse / sst if sst > 0 else 0.0
    return {"name": "r2", "metric": r2 if math.isfinite(r2) else None, "loss": mse, "n": n, "higher": True}


def _task_metrics(model: Any, data: Any, info: Any, recipe: Any, split: str) -> dict[str, Any]:
    """The task's own validation pass: its headline metric (or its loss where it has none) and its loss."""
    from liandan.recipe import LossConfig
    from liandan.training.loop import evaluate
    from liandan.training.setup import build_loss
    from liandan.training.tasks import build_task

    data, info, recipe = _judged_data(data, info, recipe)
    _, loss_fn = build_loss(recipe.loss if recipe is not None else LossConfig(), info.task)
    task = build_task(info, loss_fn, recipe)
    device = next(model.parameters()).device
    m = evaluate(model, data.eval_batches(split), loss_fn, info, device, task=task)
    key = task.headline_metric
    fin = lambda v: float(v) if v is not None and math.isfinite(v) else None  # noqa: E731
    return {"name": key, "metric": fin(m.get(key)), "loss": fin(m.get("loss")),
            "n": (info.sizes or {}).get(split), "higher": key in task.higher_is_better}


def _judged_data(data: Any, info: Any, recipe: Any) -> tuple[Any, Any, Any]:
    """The data, info and recipe to score on: the run's own, or — where the run trained with other
    values of its task's ``judge_data`` options (an SFT run that learned its prompts) — the same
    data rebuilt under them, so every candidate of a repair is counted on the same tokens."""
    from pathlib import Path

    from liandan.data.pipeline import build_data
    from liandan.recipe import load_recipe
    from liandan.training.run import fine_tune_info
    from liandan.training.tasks import task_class

    want = task_class(info.task).judge_data
    if recipe is None or all(recipe.data.options.get(k, v) == v for k, v in want.items()):
        return data, info, recipe
    recipe = load_recipe(recipe, {f"data.{k}": v for k, v in want.items()})
    data = build_data(recipe.data, recipe.seed, recipe.task)
    if recipe.model.from_run:
        data.info = fine_tune_info(data.info, Path(recipe.model.from_run), getattr(data.source, "tokenizer", None))
    return data, data.info, recipe


def run_metrics(run_dir: Any) -> dict[str, Any]:
    """Judge metrics of a finished run directory (rebuilds its data, loads its weights)."""
    from liandan.errors import LiandanError
    from liandan.training.run import load_run

    try:
        run = load_run(run_dir)
    except LiandanError:
        return {"name": "accuracy", "metric": None, "loss": None}
    data = run.load_data()
    return judge_metrics(run.model, data, run.info, run.recipe)


def gain(new: dict[str, Any], old: dict[str, Any]) -> float:
    """How much better ``new``'s metric is than ``old``'s (positive: better), whichever way it improves."""
    d = new["metric"] - old["metric"]
    return d if new.get("higher", True) else -d


def improved(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Better on the metric by more than noise — 0.005, and for accuracy 1.5 validation samples;
    on a tie (down to 0.01 worse), a ≥ 2 % lower validation loss decides. Anything finite beats
    a run whose outputs were not finite."""
    if old.get("metric") is None:
        return new.get("metric") is not None
    if new.get("metric") is None or new.get("name") != old.get("name"):
        return False
    g = gain(new, old)
    noise = max(MIN_GAIN, 1.5 / new["n"]) if new.get("name") == "accuracy" and new.get("n") else MIN_GAIN
    if g > noise:
        return True
    if g < -TOL_WORSE:
        return False
    return bool(new["loss"] is not None and old["loss"] is not None and new["loss"] < (1 - LOSS_GAIN) * old["loss"])
