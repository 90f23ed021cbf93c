"""OOD detection metrics, with OpenOOD v1.5's conventions (``openood/evaluators/metrics.py``).

Scores are *confidences*: larger = more in-distribution (ID).

* **AUROC** — probability that a random ID sample scores above a random OOD sample (ties count
  half; the Mann–Whitney statistic). It is the same whichever class is called positive.
* **FPR@95** — **OOD is the positive class** (OpenOOD v1.5, ``roc_curve(ood_indicator, -conf)``):
  the fraction of ID samples flagged as OOD at the first threshold where 95 % of the OOD samples
  are flagged. ODIN / Energy papers call ID positive instead (the fraction of OOD accepted at
  95 % ID recall); ``fpr_at_tpr(..., positive="id")`` gives that number. The two differ.
* **AUROC standard error** — Hanley & McNeil (1982), "The meaning and use of the area under a
  ROC curve", eq. 2: ``SE² = (A(1−A) + (n_id−1)(Q1−A²) + (n_ood−1)(Q2−A²)) / (n_id·n_ood)`` with
  ``Q1 = A/(2−A)``, ``Q2 = 2A²/(1+A)``; what "within noise" means when AUROCs are compared.
* **AUPR-In** — ID positive, score ``conf``; **AUPR-Out** — OOD positive, score ``−conf``; both the
  trapezoidal area under the precision–recall curve (``sklearn.metrics.auc``), not average
  precision.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _labels_scores(id_scores: np.ndarray, ood_scores: np.ndarray, positive: str) -> tuple[np.ndarray, np.ndarray]:
    id_s = np.asarray(id_scores, np.float64).ravel()
    ood_s = np.asarray(ood_scores, np.float64).ravel()
    if positive == "ood":  # OOD = 1, ranked by −confidence
        return np.r_[np.zeros(len(id_s)), np.ones(len(ood_s))], -np.r_[id_s, ood_s]
    if positive == "id":
        return np.r_[np.ones(len(id_s)), np.zeros(len(ood_s))], np.r_[id_s, ood_s]
    raise ValueError(f"positive must be 'ood' or 'id', not {positive!r}")


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, highest threshold first (no points dropped)."""
    order = np.argsort(-scores, kind="mergesort")
    s, l = scores[order], labels[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each run of equal scores
    tps = np.cumsum(l)[last]
    fps = (last + 1) - tps
    p, n = max(labels.sum(), 1), max(len(labels) - labels.sum(), 1)
    return np.r_[0.0, fps / n], np.r_[0.0, tps / p], np.r_[np.inf, s[last]]


def auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under the ROC curve, ID vs OOD (Mann–Whitney U / (n_id · n_ood), ties counted half)."""
    id_s, ood_s = np.asarray(id_scores, np.float64).ravel(), np.asarray(ood_scores, np.float64).ravel()
    if not len(id_s) or not len(ood_s):
        return float("nan")
    fpr, tpr, _ = roc_points(*_labels_scores(id_s, ood_s, "id"))
    return float(np.trapezoid(tpr, fpr))  # a tie is a diagonal step: it counts half


def fpr_at_tpr(id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95, positive: str = "ood") -> float:
    """FPR at the first threshold where TPR ≥ ``tpr``; ``positive`` picks the convention (see module)."""
    labels, scores = _labels_scores(id_scores, ood_scores, positive)
    fpr, tp_rate, _ = roc_points(labels, scores)
    return float(fpr[np.argmax(tp_rate >= tpr)])


def aupr(labels: np.ndarray, scores: np.ndarray) -> float:
    """Trapezoidal area under the precision–recall curve (sklearn ``precision_recall_curve`` + ``auc``)."""
    fpr, tpr, _ = roc_points(labels, scores)
    p, n = labels.sum(), len(labels) - labels.sum()
    tps, fps = tpr[1:] * p, fpr[1:] * n
    # sklearn appends the point (recall 0, precision 1); recall grows as the threshold falls
    precision = np.r_[1.0, tps / np.maximum(tps + fps, 1)]
    recall = np.r_[0.0, tps / max(p, 1)]
    return float(np.trapezoid(precision, recall))


def auroc_se(auc: float, n_id: int, n_ood: int) -> float:
    """Standard error of an AUROC from ``n_id`` and ``n_ood`` samples (Hanley & McNeil 1982, eq. 2)."""
    if n_id < 1 or n_ood < 1 or not np.isfinite(auc):
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_id - 1) * (q1 - auc**2) + (n_ood - 1) * (q2 - auc**2)) / (n_id * n_ood)
    return float(np.sqrt(max(var, 0.0)))


def rises_within_noise(aurocs: list[float], ses: list[float], z: float = 2.0) -> bool:
    """True when no AUROC falls below an earlier one by more than ``z`` standard errors of the
    difference (``√(se_i² + se_j²)``): monotone non-decreasing up to sampling noise."""
    return all(aurocs[j] >= aurocs[i] - z * float(np.hypot(ses[i], ses[j]))
               for i in range(len(aurocs)) for j in range(i + 1, len(aurocs)))


LOGIT_METHODS = ("msp", "energy", "odin")  # scores read off the classifier's logits


def sweep_verdicts(labels: list[str], methods: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Per method of a severity sweep (``methods[m][i]`` = metrics at ``labels[i]``): whether its
    AUROC rises within noise, and where it peaks and ends (the evidence when it does not)."""
    out = {}
    for m, vals in methods.items():
        au = [v["auroc"] for v in vals]
        ses = [v.get("auroc_se") for v in vals]
        top = int(np.argmax(au))
        out[m] = {
            "rises": rises_within_noise(au, ses) if all(s is not None for s in ses) else None,
            "peak": labels[top],
            "peak_auroc": au[top],
            "end_auroc": au[-1],
        }
    return out


def sweep_advice(verdicts: dict[str, dict[str, Any]]) -> str | None:
    """One sentence on the methods whose AUROC does not rise with severity: why, and what to use."""
    falls = [m for m, v in verdicts.items() if v["rises"] is False]
    if not falls:
        return None
    parts = [f"{m} peaks at {verdicts[m]['peak']} ({verdicts[m]['peak_auroc']:.3f}) and falls to "
             f"{verdicts[m]['end_auroc']:.3f}" for m in falls]
    text = "; ".join(parts) + "."
    if any(m in LOGIT_METHODS for m in falls):
        text += (" Strongly shifted inputs get answers as confident as real ones: networks of ReLUs grow"
                 " confident far from their data (Hein et al. 2019), so the logits stop telling the shift apart.")
        maha = verdicts.get("mahalanobis")
        if maha is None:
            text += " Try --method mahalanobis: a distance to the training features, not the classifier's confidence."
        elif maha["rises"]:
            text += " Mahalanobis distance on the features rises throughout: use --method mahalanobis for this shift."
    if "mahalanobis" in falls:
        text += " The features themselves move back towards the training classes at high severity."
    return text


def ood_metrics(id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95) -> dict[str, float]:
    """AUROC, FPR@95 (OOD positive), AUPR-In and AUPR-Out, as fractions (OpenOOD reports ×100)."""
    l_out, s_out = _labels_scores(id_scores, ood_scores, "ood")
    l_in, s_in = _labels_scores(id_scores, ood_scores, "id")
    auc = auroc(id_scores, ood_scores)
    return {
        "auroc": auc,
        "auroc_se": auroc_se(auc, int(np.size(id_scores)), int(np.size(ood_scores))),
        "fpr95": fpr_at_tpr(id_scores, ood_scores, tpr, "ood"),
        "aupr_in": aupr(l_in, s_in),
        "aupr_out": aupr(l_out, s_out),
    }
