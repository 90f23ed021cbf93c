"""Calibration: expected calibration error and the reliability diagram's data.

Guo et al., "On Calibration of Modern Neural Networks" (ICML 2017): predictions are grouped into
``M`` equal-width confidence bins ``B_m`` over (0, 1]; the reliability diagram plots each bin's
accuracy against its mean confidence, and

    ECE = Σ_m |B_m|/n · |acc(B_m) − conf(B_m)|,     MCE = max_m |acc(B_m) − conf(B_m)|.

Confidence is the maximum softmax probability, correctness is ``argmax == label``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def bin_index(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each confidence: bin m holds (m/M, (m+1)/M]; a confidence of 0 goes to bin 0."""
    return np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def reliability(conf: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> dict[str, Any]:
    """Per-bin counts, mean confidence and accuracy, plus ECE and MCE (Guo et al. 2017)."""
    conf = np.asarray(conf, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    n = len(conf)
    idx = bin_index(conf, n_bins)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    nz = count > 0
    mean_conf = np.divide(conf_sum, count, out=np.zeros(n_bins), where=nz)
    acc = np.divide(acc_sum, count, out=np.zeros(n_bins), where=nz)
    gap = np.abs(acc - mean_conf)
    ece = float((count / max(n, 1) * gap).sum())
    mce = float(gap[nz].max()) if nz.any() else 0.0
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = [
        {
            "lo": float(edges[m]),
            "hi": float(edges[m + 1]),
            "count": int(count[m]),
            "confidence": float(mean_conf[m]) if nz[m] else None,
            "accuracy": float(acc[m]) if nz[m] else None,
        }
        for m in range(n_bins)
    ]
    return {"ece": ece, "mce": mce, "n_bins": n_bins, "bins": bins}


def expected_calibration_error(conf: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """ECE with ``n_bins`` equal-width bins (Guo et al. 2017, eq. 3)."""
    return reliability(conf, correct, n_bins)["ece"]
