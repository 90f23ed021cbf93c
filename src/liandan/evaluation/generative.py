"""Sample quality of a generative run, judged by a classifier trained on the real data.

A sample "looks like a digit" when a good digits classifier gives one class probability ≥
``threshold`` (0.9): the fraction of such samples measures fidelity, in the spirit of the
Inception Score (Salimans et al. 2016), whose two ingredients are confident p(y|x) per sample
and a spread-out marginal p(y). The spread is reported directly: the histogram of predicted
classes, its entropy H = −Σ_k p_k log2 p_k (log2(10) ≈ 3.32 bits when all ten classes are equally
frequent) and the number of classes present (mode collapse shows up as few classes).
The same numbers on the classifier's real test images are the ceiling to compare against.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

CLASSIFIER_PRESET = "digits-lenet"


def train_classifier(out: str | Path, preset: str = CLASSIFIER_PRESET, epochs: int | None = None,
                     seed: int = 0) -> Path:
    """Train the reference classifier (seeded, quiet, no doctor/report) into ``out``; its run directory."""
    from liandan.training.api import train

    overrides = ["doctor.enabled=false", "train.tensorboard=false", "report=false", f"seed={seed}"]
    if epochs:
        overrides.append(f"train.epochs={epochs}")
    return train(preset, overrides=overrides, out=out, quiet=True).dir


@torch.no_grad()
def classify_pixels(run: Any, pixels: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Class probabilities (N, K) of the classifier ``run`` for images in pixels [0, 1] (N, C, H, W),
    resized to the classifier's input size (bilinear, as the digits source upsamples) and
    normalised with its training statistics."""
    c, h, w = run.info.input_shape
    if pixels.shape[1] != c:
        raise ValueError(f"samples have {pixels.shape[1]} channels, the classifier takes {c}")
    if pixels.shape[-2:] != (h, w):
        pixels = F.interpolate(pixels, size=(h, w), mode="bilinear", align_corners=False)
    x = run.info.normalize_x(pixels)
    return torch.cat([F.softmax(run.model(x[i:i + batch]).float(), 1) for i in range(0, len(x), batch)])


def confidence_stats(probs: torch.Tensor, threshold: float = 0.9) -> dict[str, Any]:
    """Fidelity and spread of predictions (N, K): confident fraction, class histogram, entropy."""
    conf, pred = probs.max(1)
    k = probs.shape[1]
    hist = torch.bincount(pred, minlength=k)
    p = hist.double() / hist.sum()
    entropy = float(-(p[p > 0] * p[p > 0].log2()).sum())
    return {"confident_fraction": round(float((conf >= threshold).double().mean()), 4),
            "mean_confidence": round(float(conf.mean()), 4),
            "class_histogram": hist.tolist(), "classes_present": int((hist > 0).sum()),
            "entropy_bits": round(entropy, 4), "max_entropy_bits": round(math.log2(k), 4)}


def sample_quality(run_dir: str | Path, classifier_run: str | Path | None = None, n: int = 500, seed: int = 0,
                   threshold: float = 0.9, steps: int | None = None, work_dir: str | Path | None = None
                   ) -> dict[str, Any]:
    """Draw ``n`` samples from ``run_dir`` and judge them with ``classifier_run``.

    Without ``classifier_run`` the reference classifier (preset digits-lenet, seed 0) is trained
    first into ``work_dir`` (default: a temporary directory). Returns the generator's
    :func:`confidence_stats`, the same on the classifier's real test split (``real``), the
    classifier's test accuracy and wall times.
    """
    import tempfile

    from liandan.generation.images import draw_images
    from liandan.training.run import load_run

    t0 = time.perf_counter()
    gen = load_run(run_dir)
    tmp = None
    if classifier_run is None:
        tmp = tempfile.TemporaryDirectory() if work_dir is None else None
        classifier_run = train_classifier(Path(tmp.name if tmp else work_dir) / "classifier")
    t_clf = time.perf_counter() - t0
    clf = load_run(classifier_run)
    t1 = time.perf_counter()
    pixels = draw_images(gen.model, n, seed, steps)  # (n, C, H, W) in [0, 1]
    t_sample = time.perf_counter() - t1
    res = {"run": str(run_dir), "model": gen.recipe.model.name, "n": n, "seed": seed, "threshold": threshold,
           **confidence_stats(classify_pixels(clf, pixels), threshold)}
    data = clf.load_data()
    xt = data.eval_batches("test").x  # normalised for the classifier already
    with torch.no_grad():
        real = torch.cat([F.softmax(clf.model(xt[i:i + 256]), 1) for i in range(0, len(xt), 256)])
    res["real"] = confidence_stats(real, threshold)
    res["classifier"] = {"run": str(classifier_run), "model": clf.recipe.model.name,
                         "test_accuracy": clf.summary.get("final", {}).get("test", {}).get("accuracy")}
    res["wall_s"] = {"classifier": round(t_clf, 2), "sampling": round(t_sample, 2),
                     "total": round(time.perf_counter() - t0, 2)}
    if tmp is not None:
        tmp.cleanup()
    return res
