"""The repair judge: one validation metric computed the same way for every candidate, whatever
loss or task the candidate trains with.

A fix may change the loss (BCE → cross-entropy) or the task (regression on class ids →
classification), so the recipe's own validation loss cannot compare candidates. The judge
evaluates the trained model on the validation split itself:
- classification: accuracy, and the cross-entropy of softmax(output) as a proper score for ties;
- regression on class ids: accuracy of the rounded prediction (comparable with the
  classification fix), MSE in standardised units for ties;
- regression: R², and MSE in standardised units.
"""

from __future__ import annotations

import math
from typing import Any

TOL_WORSE, MIN_GAIN, LOSS_GAIN = 0.01, 0.005, 0.02


def judge_metrics(model: Any, data: Any, info: Any) -> dict[str, Any]:
    """{"name", "metric", "loss"} of ``model`` on the validation split (train if there is none)."""
    import torch
    import torch.nn.functional as F

    split = "val" if data.val is not None else "train"
    was = model.training
    model.eval()
    outs, ys = [], []
    try:
        with torch.no_grad():
            for xb, yb in data.eval_batches(split).epoch(0):
                dev = next(model.parameters()).device
                outs.append(model(xb.to(dev)).float().cpu())
                ys.append(yb)
    finally:
        model.train(was)
    from liandan.training.tasks import task_class

    out, y = torch.cat(outs), torch.cat(ys)
    n = len(y)
    classify = task_class(info.task).is_classification
    if not torch.isfinite(out).all():
        return {"name": "accuracy" if classify or info.class_names else "r2",
                "metric": None, "loss": None, "n": n}
    if classify:
        return {"name": "accuracy", "metric": float((out.argmax(-1) == y).float().mean()),
                "loss": float(F.cross_entropy(out, y)), "n": n}
    t = y.float().view_as(out)
    mse = float(((out - t) ** 2).mean())
    if info.class_names:  # class ids regressed: score the rounded prediction as a class
        pred, true = info.denormalize_y(out), info.denormalize_y(t)
        return {"name": "accuracy", "metric": float((pred.round() == true.round()).float().mean()), "loss": mse,
                "n": n}
    sst = float(((t - t.mean(0)) ** 2).mean())
    r2 = 1.0 - mse / sst if sst > 0 else 0.0
    return {"name": "r2", "metric": r2 if math.isfinite(r2) else None, "loss": mse, "n": n}


def run_metrics(run_dir: Any) -> dict[str, Any]:
    """Judge metrics of a finished run directory (rebuilds its data, loads its weights)."""
    from liandan.errors import LiandanError
    from liandan.training.run import load_run

    try:
        run = load_run(run_dir)
    except LiandanError:
        return {"name": "accuracy", "metric": None, "loss": None}
    data = run.load_data()
    return judge_metrics(run.model, data, run.info)


def improved(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Better on the metric by more than noise — 0.005, and for accuracy 1.5 validation samples;
    on a tie (down to 0.01 worse), a ≥ 2 % lower validation loss decides. Anything finite beats
    a run whose outputs were not finite."""
    if old.get("metric") is None:
        return new.get("metric") is not None
    if new.get("metric") is None or new.get("name") != old.get("name"):
        return False
    gain = new["metric"] - old["metric"]
    noise = max(MIN_GAIN, 1.5 / new["n"]) if new.get("name") == "accuracy" and new.get("n") else MIN_GAIN
    if gain > noise:
        return True
    if gain < -TOL_WORSE:
        return False
    return bool(new["loss"] is not None and old["loss"] is not None and new["loss"] < (1 - LOSS_GAIN) * old["loss"])
