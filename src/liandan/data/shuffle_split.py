"""scikit-learn's seeded ``train_test_split`` of index positions, without importing scikit-learn.

``liandan.data.pipeline.split_indices`` used ``sklearn.model_selection.train_test_split(idx,
test_size=k, random_state=seed, stratify=labels)``; importing ``sklearn.model_selection`` costs
about a second at the start of every run (scipy comes with it). The algorithm is short and
draws everything from ``numpy.random.RandomState(seed)``, so it is reproduced here call for call
(``sklearn/model_selection/_split.py`` and ``utils/extmath.py``, scikit-learn 1.3-1.9):

* without labels (``ShuffleSplit``): ``perm = rng.permutation(n)``; test ``perm[:k]``, train
  ``perm[k:]``;
* with labels (``StratifiedShuffleSplit``, Mehta & Patel's "approximate mode" of the
  multivariate hypergeometric): each class gets ``floor(count / n · n_train)`` training rows,
  the rows still missing go to the classes with the largest remainders (ties broken by
  ``rng.choice``), the test rows likewise from what is left; then each class's rows are
  permuted, cut into its train and test shares, and both sets are permuted.

Both raise ``ValueError`` where scikit-learn does (a test size outside [1, n-1]; stratified: a
class with one member, or fewer train or test rows than classes), so the callers' fallbacks
behave as before. ``tests/data/test_split_exact.py`` compares the indices, order included, with
scikit-learn's over hundreds of sizes, seeds and class layouts.
"""

from __future__ import annotations

import numpy as np


def _sizes(n: int, n_test: int) -> tuple[int, int]:
    """``_validate_shuffle_split`` for an integer test size and no train size."""
    if n_test >= n or n_test <= 0:
        raise ValueError(f"test_size={n_test} should be either positive and smaller than the number of samples {n}")
    return n - n_test, n_test


def approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """``sklearn.utils.extmath._approximate_mode``: per-class draws summing to ``n_draws``, close to
    the proportions of ``class_counts``; leftover draws go to the largest remainders, ties at random."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)  # never overshoots n_draws; the remainders fill the rest
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:  # largest remainder first
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            inds = rng.choice(inds, size=add_now, replace=False)  # ties broken at random
            floored[inds] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def _stratified(labels: np.ndarray, n_train: int, n_test: int,
                rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """``StratifiedShuffleSplit._iter_indices``, first split."""
    classes, y_indices, class_counts = np.unique(labels, return_inverse=True, return_counts=True)
    n_classes = classes.shape[0]
    if np.min(class_counts) < 2:
        raise ValueError(f"classes with one member cannot be stratified: {classes[class_counts < 2].tolist()}")
    if n_train < n_classes or n_test < n_classes:
        raise ValueError(f"train ({n_train}) and test ({n_test}) sizes must reach the {n_classes} classes")
    # each class's positions in order (np.unique sorted the classes)
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    n_i = approximate_mode(class_counts, n_train, rng)
    t_i = approximate_mode(class_counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i in range(n_classes):
        perm = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.extend(perm[: n_i[i]])
        test.extend(perm[n_i[i]: n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def shuffle_split(n: int, n_test: int, seed: int, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Train and test positions in ``range(n)``, equal (order included) to scikit-learn's
    ``train_test_split(np.arange(n), test_size=n_test, random_state=seed, stratify=labels)``."""
    n_train, n_test = _sizes(n, n_test)
    rng = np.random.RandomState(seed)
    if labels is not None:
        labels = np.asarray(labels)
        if len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} samples")
        return _stratified(labels, n_train, n_test, rng)
    perm = rng.permutation(n)
    return perm[n_test: n_test + n_train], perm[:n_test]
