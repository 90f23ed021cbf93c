"""Built-in data sources: scikit-learn's shipped sets and small synthetic problems.

Every module of this package that defines sources is imported here, so the registry sees them.
"""

from __future__ import annotations

import math

import numpy as np

from liandan.data import sklearn_tables
from liandan.data.base import Source, classification, regression
from liandan.registry import register_data


@register_data("digits", tags=("image",))
def digits(size: int = 8) -> Source:
    """8×8 handwritten digits (1,797 images, 10 classes), shipped with scikit-learn; ``size`` upsamples.

    Args:
        size: image side in pixels; other than 8: a bilinear resize (32 for LeNet-5's native input)
    """
    d = sklearn_tables.load("digits")  # sklearn's file, read without importing sklearn (1+ s)
    x = d.images.astype(np.float32)[:, None] / 16.0  # (N, 1, 8, 8) in [0, 1]
    if size != 8:  # bilinear upsampling, e.g. to LeNet-5's native 32×32
        import torch

        x = torch.nn.functional.interpolate(torch.from_numpy(x), size=(size, size), mode="bilinear",
                                            align_corners=False).numpy()
    return classification(x, d.target, [str(i) for i in range(10)])


def _sklearn_table(name: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str] | None]:
    d = sklearn_tables.load(name)  # bit-identical to sklearn.datasets.load_<name>()
    return d.data.astype(np.float32), d.target, d.feature_names, d.target_names


@register_data("iris", tags=("tabular",))
def iris() -> Source:
    """Iris flowers: 150 samples, 4 features, 3 classes (scikit-learn)."""
    x, y, feats, names = _sklearn_table("iris")
    return classification(x, y, [str(n) for n in names], feature_names=feats)


@register_data("wine", tags=("tabular",))
def wine() -> Source:
    """Wine cultivars: 178 samples, 13 chemical features, 3 classes (scikit-learn)."""
    x, y, feats, names = _sklearn_table("wine")
    return classification(x, y, [str(n) for n in names], feature_names=feats)


@register_data("breast_cancer", tags=("tabular",))
def breast_cancer() -> Source:
    """Breast cancer diagnosis: 569 samples, 30 features, 2 classes (scikit-learn)."""
    x, y, feats, names = _sklearn_table("breast_cancer")
    return classification(x, y, [str(n) for n in names], feature_names=feats)


@register_data("diabetes", tags=("tabular",))
def diabetes() -> Source:
    """Diabetes progression: 442 samples, 10 features, one regression target (scikit-learn)."""
    x, y, feats, _ = _sklearn_table("diabetes")
    return regression(x, y.astype(np.float32)[:, None], feature_names=feats)


@register_data("spirals", tags=("tabular", "synthetic"))
def spirals(n: int = 1500, classes: int = 3, noise: float = 0.2, turns: float = 1.0, seed: int = 0) -> Source:
    """Interleaved 2-D spirals (cs231n's toy problem): not linearly separable.

    Args:
        n: number of points, shared evenly by the classes
        classes: number of spiral arms, one class each
        noise: std of the Gaussian noise on each point's angle, in radians
        turns: revolutions of each arm
        seed: random seed of the generated data (the same seed gives the same samples)
    """
    rng = np.random.default_rng(seed)
    per = n // classes
    xs, ys = [], []
    for k in range(classes):
        r = np.linspace(0.05, 1.0, per)
        t = np.linspace(k * 2 * math.pi / classes, k * 2 * math.pi / classes + 2 * math.pi * turns, per)
        t = t + rng.normal(0, noise, per)
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], 1))
        ys.append(np.full(per, k))
    return classification(np.concatenate(xs).astype(np.float32), np.concatenate(ys))


@register_data("blobs", tags=("tabular", "synthetic"))
def blobs(n: int = 1000, classes: int = 4, features: int = 2, spread: float = 1.0, seed: int = 0) -> Source:
    """Gaussian blobs: an easy, linearly separable sanity check.

    Args:
        n: number of samples
        classes: number of blobs, one class each
        features: dimensions of a sample
        spread: std of each blob around its centre (scikit-learn's cluster_std)
        seed: random seed of the generated data (the same seed gives the same samples)
    """
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=n, centers=classes, n_features=features, cluster_std=spread, random_state=seed)
    return classification(x.astype(np.float32), y)


# Sources defined in sibling modules register on import.
from liandan.data import captions, files, records, sequences, shapes, tables, text  # noqa: E402,F401
