"""Evaluation metrics of a trained run: the numbers behind ``liandan evaluate`` and the report.

Classification: accuracy, top-k accuracy, a confusion matrix (rows = true class, columns =
predicted), per-class precision / recall / F1 / support, macro, micro and support-weighted F1
(the definitions of scikit-learn's ``precision_recall_fscore_support``, with 0 for an undefined
ratio), negative log-likelihood and calibration (ECE, reliability bins; Guo et al. 2017).
Regression, in the target's original units: MSE, RMSE, MAE and R² (uniform average over targets,
as ``sklearn.metrics.r2_score``). The tests check every number against scikit-learn.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from liandan.errors import LiandanError
from liandan.evaluation.calibration import reliability

if TYPE_CHECKING:
    from liandan.data.pipeline import DataModule
    from liandan.training.run import Run


def confusion_matrix(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """``cm[i, j]`` = samples of true class i predicted as j."""
    y, pred = np.asarray(y, np.int64), np.asarray(pred, np.int64)
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def f1_from_confusion(cm: np.ndarray) -> dict[str, Any]:
    """Per-class precision, recall, F1, support and their macro / micro / weighted averages.

    Macro averages run over the classes that occur in the labels or the predictions (what
    scikit-learn does with ``labels=None``, and what the trainer's ``f1_macro`` does).
    """
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(1), cm.sum(0)
    prec, rec = _div(tp, predicted), _div(tp, support)
    f1 = _div(2 * prec * rec, prec + rec)
    present = (support + predicted) > 0
    tot_tp, tot = tp.sum(), cm.sum()
    micro_p, micro_r = _div(tot_tp, predicted.sum()), _div(tot_tp, support.sum())
    micro = float(_div(2 * micro_p * micro_r, micro_p + micro_r))
    w = support / max(tot, 1)
    mean = (lambda v: float(v[present].mean())) if present.any() else (lambda v: 0.0)
    return {
        "precision": prec,
        "recall": rec,
        "f1": f1,
        "support": support,
        "macro_precision": mean(prec),
        "macro_recall": mean(rec),
        "macro_f1": mean(f1),
        "micro_f1": micro,
        "weighted_f1": float((f1 * w).sum()),
    }


def top_k_accuracy(logits: np.ndarray, y: np.ndarray, k: int) -> float:
    """Fraction of samples whose label is among the ``k`` highest scores."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float((top == np.asarray(y)[:, None]).any(1).mean()) if len(y) else 0.0


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def classification_metrics(
    logits: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    class_names: list[str] | None = None,
    n_bins: int = 15,
) -> dict[str, Any]:
    """Every classification metric of the module docstring from raw logits and integer labels."""
    logits = np.asarray(logits, np.float64)
    y = np.asarray(y, np.int64)
    k = num_classes
    names = list(class_names) if class_names else [str(i) for i in range(k)]
    probs = softmax(logits)
    pred = probs.argmax(1)
    cm = confusion_matrix(y, pred, k)
    f = f1_from_confusion(cm)
    conf = probs.max(1)
    cal = reliability(conf, pred == y, n_bins)
    nll = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-15, None)).mean()) if len(y) else 0.0
    res: dict[str, Any] = {"accuracy": float((pred == y).mean()) if len(y) else 0.0}
    if k >= 10:  # same key and rule as the trainer's metrics
        res["top5_accuracy"] = top_k_accuracy(logits, y, 5)
    res.update(
        {
            "f1_macro": f["macro_f1"],
            "macro_f1": f["macro_f1"],
            "micro_f1": f["micro_f1"],
            "weighted_f1": f["weighted_f1"],
            "macro_precision": f["macro_precision"],
            "macro_recall": f["macro_recall"],
            "top_k": {str(j): top_k_accuracy(logits, y, j) for j in (1, 3, 5) if j <= k},
            "nll": nll,
            "ece": cal["ece"],
            "mce": cal["mce"],
            "mean_confidence": float(conf.mean()) if len(y) else 0.0,
            "per_class": [
                {
                    "class": i,
                    "name": names[i] if i < len(names) else str(i),
                    "precision": float(f["precision"][i]),
                    "recall": float(f["recall"][i]),
                    "f1": float(f["f1"][i]),
                    "support": int(f["support"][i]),
                }
                for i in range(k)
            ],
            "confusion_matrix": cm.tolist(),
            "class_names": names,
            "reliability": cal,
        }
    )
    return res


def regression_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    """MSE, RMSE, MAE and R² in the target's units; R² is the uniform average over targets."""
    p = np.asarray(pred, np.float64).reshape(len(pred), -1)
    t = np.asarray(target, np.float64).reshape(len(target), -1)
    err = p - t
    mse_t = (err**2).mean(0)
    var_t = ((t - t.mean(0)) ** 2).mean(0)
    r2_t = np.where(var_t > 0, 1 - _div(mse_t, var_t), 0.0)
    return {
        "mse": float(mse_t.mean()),
        "rmse": float(np.sqrt(mse_t.mean())),
        "mae": float(np.abs(err).mean()),
        "r2": float(r2_t.mean()),
        "r2_per_target": r2_t.tolist(),
        "mse_per_target": mse_t.tolist(),
    }


def evaluate_full(
    run_dir: str | Path, split: str = "test", source: str | None = None, n_bins: int = 15
) -> dict[str, Any]:
    """All metrics of a trained run on ``split``, or on ``source`` instead of the run's own data.

    ``source`` is any spec of :mod:`liandan.evaluation.sources` that has labels: a data source
    name (``"digits"``, ``"shapes:n=500"``; mapped to the run's input shape) or a shift of the
    split (``"rotate:30"``, ``"blur:1.5"``, ``"invert"``, ``"noise:0.5"``). The top-level keys
    ``loss``, ``accuracy``, ``top5_accuracy``, ``f1_macro`` (or ``mse``, ``mae``, ``r2``) are
    those of the trainer's metrics; the rest is added.
    """
    from liandan.evaluation.runio import open_run

    run, data = open_run(run_dir)
    return evaluate_loaded(run, data, split, source, n_bins)


def evaluate_loaded(
    run: Run, data: DataModule, split: str = "test", source: str | None = None, n_bins: int = 15
) -> dict[str, Any]:
    """:func:`evaluate_full` on an already loaded run and its data."""
    from liandan.evaluation.runio import logits_of, raw_split
    from liandan.training.setup import build_loss
    from liandan.training.tasks import build_task, task_class

    info = run.info
    kind = task_class(info.task)
    if not (kind.is_classification or kind.is_regression) and source is None:
        # tasks that own their loss and metrics (lm, mlm, ...): the trainer's evaluation of the split
        from liandan.training.loop import evaluate

        res = evaluate(run.model, data.eval_batches(split), None, info, torch.device("cpu"))
        return {"split": split, "source": split, "n": int(info.sizes.get(split, 0)), **res}
    if source is None:
        x, y = raw_split(data, split)
        label = split
    else:
        from liandan.evaluation.sources import resolve_source

        x, y, label = resolve_source(source, data, info, split=split, seed=run.recipe.seed)
        if y is None:
            raise LiandanError(f"source {source!r} has no labels of this run's classes to evaluate against")
    out = logits_of(run.model, info, x)
    task = build_task(info, build_loss(run.recipe.loss, info.task)[1], run.recipe)
    res: dict[str, Any] = {"split": split, "source": label, "n": len(y)}
    if task.is_classification:
        with torch.no_grad():
            res["loss"] = float(task.compute_loss(out, y)) if len(y) else float("nan")
        res.update(classification_metrics(out.numpy(), y.numpy(), info.num_classes, info.class_names, n_bins))
    else:
        t = y.float().reshape(len(y), -1)
        t_norm = t if info.y_mean is None else (t - torch.tensor(info.y_mean)) / torch.tensor(info.y_std)
        with torch.no_grad():
            res["loss"] = float(task.compute_loss(out, t_norm.view_as(out)))
        res.update(regression_metrics(info.denormalize_y(out).numpy(), t.numpy()))
    return res
