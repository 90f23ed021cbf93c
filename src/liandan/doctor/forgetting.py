"""How much of its base run's skill a fine-tune kept: the measurement behind ``catastrophic_forgetting``.

A fine-tune (``model.from_run``) trains on new data; what it may lose is the base's own task
(McCloskey & Cohen 1989; Kirkpatrick et al. 2017 measure it as accuracy on the old task after
training on the new one). At the end of the run the fine-tuned model and the base model are both
evaluated on the same held-out slice of the base's data — the base recipe's validation split
(else test), rebuilt from its seeded recipe, its first :data:`CAP` samples — with the base's task
and metrics. The base is evaluated here rather than read from its ``summary.json``: the summary
covers the whole split (and possibly the best epoch's weights), the slice is what both models see.

Only where the two runs take the same inputs and give the same outputs: the same task, classes and
vocabulary (``model.from_run`` already refuses another tokenizer), in-memory data, and new data (a
fine-tune on the base's own data source and options is judged by its own validation); otherwise no
measurement, and the rule stays silent. Inputs (and regression targets) are standardised with
each run's own training statistics, as each model was trained: the base's slice is taken back to
raw values and standardised again with the fine-tune's.

The result is a ``forgetting`` record among the doctor's records (``doctor_probes.jsonl``), so
``liandan doctor RUN_DIR`` re-judges on the same numbers; a run trained with the doctor off is
measured then, from its saved weights.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

RECORD = "forgetting"
CAP = 512  # samples of the base's held-out split: a few hundred make a cheap, stable estimate
MIN_SKILL = 0.2  # a metric counts as the base's skill from 20 % of the way from chance to perfect
# The base's skill, strictest first: exact match of a whole answer, then accuracy, F1, R².
PREFERRED = ("exact_match", "accuracy", "f1", "r2")
_BASE: dict[tuple, dict[str, float]] = {}  # (base dir, weights mtime, split, n) -> the base's metrics


def measured(view: Any) -> dict[str, Any] | None:
    """The view's ``forgetting`` record: found among its records, else measured now (a finished
    fine-tune only) and added to them. None when the run is no fine-tune or cannot be measured."""
    rec = next((r for r in view.records if r.get("type") == RECORD), None)
    if rec is None:
        if view.mode != "train" or view.phase != "end" or not view.recipe.model.from_run \
                or not view.recipe.doctor.forgetting:
            return None
        rec = _measure_view(view)
        view.records.append(rec)
        if (sink := view.extra.get("sink")) is not None:  # the live doctor keeps it in its probe log
            sink(rec)
    return rec if "skipped" not in rec else None


def _measure_view(view: Any) -> dict[str, Any]:
    import numpy as np
    import torch

    model = view.extra.get("model")
    if model is None and view.extra.get("dir"):  # post hoc: the run's delivered weights
        from liandan.training.run import load_run

        try:
            model = load_run(view.extra["dir"]).model
        except Exception as e:  # noqa: BLE001 (weights gone or damaged: nothing to measure)
            return {"type": RECORD, "skipped": f"the run's model cannot be loaded ({type(e).__name__})"}
    if model is None:
        return {"type": RECORD, "skipped": "no model"}
    py, npy = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng():  # rebuilding the base's data and model reseeds: not the run's streams
            return measure(model, Path(view.recipe.model.from_run), view.data_info(), view.task, view.recipe.data)
    except Exception as e:  # noqa: BLE001 (a base whose data or weights cannot be rebuilt: no opinion)
        return {"type": RECORD, "skipped": f"{type(e).__name__}: {str(e).strip()[:160]}"}
    finally:
        random.setstate(py)
        np.random.set_state(npy)


def _same_io(base: dict[str, Any], tuned: dict[str, Any], task: str) -> str | None:
    """Why the two runs cannot be compared on the base's data (None: they can)."""
    from liandan.training.tasks import task_class

    if task_class(base["task"]) is not task_class(task):  # the same registered task: the same batches and metrics
        return f"the base's task is {base['task']}, the fine-tune's {task}"
    for key in ("num_classes", "class_names", "vocab_size", "input_shape"):
        if base.get(key) != tuned.get(key) and not (key == "input_shape" and base.get("vocab_size")):
            return f"{key} differs"
    return None


def _restandardise(x: Any, src: dict[str, Any], dst: dict[str, Any], mean: str, std: str) -> Any:
    """``x`` standardised with ``src``'s statistics, standardised with ``dst``'s instead."""
    import torch

    if src.get(mean) is None or dst.get(mean) is None or not x.is_floating_point():
        return x
    shape = (-1, 1, 1) if x.dim() == 4 else (-1,)
    t = lambda v: torch.tensor(v, dtype=x.dtype).view(shape)  # noqa: E731
    raw = x * t(src[std]) + t(src[mean])
    return (raw - t(dst[mean])) / t(dst[std])


def skill(metrics: dict[str, float], chance: dict[str, float]) -> tuple[str, float] | None:
    """(metric, quality) of the base's strictest metric with real skill: quality = (m − chance) /
    (1 − chance) ≥ :data:`MIN_SKILL`; None when no metric has it."""
    for key in PREFERRED:
        if key in metrics and math.isfinite(metrics[key]):
            c = chance.get(key, 0.0)
            q = (metrics[key] - c) / (1 - c)
            if q >= MIN_SKILL:
                return key, q
    return None


def measure(model: Any, base_dir: Path, tuned_info: dict[str, Any], task: str, data_cfg: Any = None,
            cap: int = CAP) -> dict[str, Any]:
    """Evaluate ``model`` (the fine-tune) and the base run's model on the same slice of the base's
    held-out data; the ``forgetting`` record (``skipped`` with a reason when they cannot be compared,
    or when the fine-tune's data section ``data_cfg`` is the base's: its own validation speaks then)."""
    from liandan.data.loaders import TensorBatches
    from liandan.data.pipeline import build_data
    from liandan.training.loop import evaluate
    from liandan.training.run import Run
    from liandan.training.setup import build_loss
    from liandan.training.tasks import build_task, task_class

    skip = lambda why: {"type": RECORD, "skipped": why}  # noqa: E731
    base = Run.open(base_dir)
    binfo = base.info.to_dict()
    if (why := _same_io(binfo, tuned_info, task)) is not None:
        return skip(why)
    if data_cfg is not None and (data_cfg.source, data_cfg.options) == (base.recipe.data.source,
                                                                        base.recipe.data.options):
        return skip("the fine-tune trains on the base's own data")
    data = build_data(base.recipe.data, base.recipe.seed, base.recipe.task)
    split = next((s for s in ("val", "test") if getattr(data, s) is not None), None)
    if split is None:
        return skip("the base run has no validation or test split")
    b = data.eval_batches(split)
    if not isinstance(b, TensorBatches):
        return skip("the base's data is not held in memory")
    x, y = b.x[:cap], b.y[:cap]
    _, loss_fn = build_loss(base.recipe.loss, base.info.task)
    btask = build_task(base.info, loss_fn, base.recipe)
    device = next(model.parameters()).device
    weights = base.files.weights(None, base.summary)
    key = (str(base.dir.resolve()), weights.stat().st_mtime_ns, split, len(y))
    if key not in _BASE:
        _BASE[key] = evaluate(base.model.to(device), TensorBatches(x, y, 256), loss_fn, base.info, device, task=btask)
    before = _BASE[key]
    xt = _restandardise(x, binfo, tuned_info, "x_mean", "x_std")
    yt = _restandardise(y, binfo, tuned_info, "y_mean", "y_std")
    after = evaluate(model, TensorBatches(xt, yt, 256), loss_fn, base.info, device, task=btask)
    k = max(int(binfo.get("num_classes") or 0), 2)
    chance = {"accuracy": 1.0 / k} if task_class(task).is_classification else {}
    found = skill(before, chance)
    if found is None:
        return skip("the base run has no skill above chance on its own held-out data")
    metric, _ = found
    c = chance.get(metric, 0.0)
    rec = {"type": RECORD, "base_run": str(base_dir), "split": split, "samples": int(len(y)), "metric": metric,
           "chance": c, "base": float(before[metric]), "tuned": float(after.get(metric, float("nan"))),
           "base_loss": float(before["loss"]), "tuned_loss": float(after["loss"])}
    if not math.isfinite(rec["tuned"]):
        rec["tuned"] = c  # a model that no longer gives a finite metric has no skill left
    return rec


def lost_share(rec: dict[str, Any]) -> float:
    """The share of the base's above-chance skill the fine-tune lost: (base − tuned) / (base − chance),
    0 = all kept, 1 = back to chance (negative: the fine-tune is better at the base's task)."""
    return (rec["base"] - rec["tuned"]) / (rec["base"] - rec["chance"])

