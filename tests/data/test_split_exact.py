"""The seeded split without scikit-learn is scikit-learn's, index for index.

``liandan.data.shuffle_split`` reproduces ``train_test_split`` (plain and stratified); these tests
compare it with scikit-learn itself over hundreds of sizes, test sizes, seeds and class layouts
(tiny classes, more classes than test rows, ...), ValueError included, and ``split_indices`` with
its former scikit-learn implementation (kept below as the reference) over sources with and
without fixed splits.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.model_selection import train_test_split

from liandan.data.base import Source, classification, regression
from liandan.data.pipeline import split_indices
from liandan.data.shuffle_split import shuffle_split
from liandan.errors import LiandanError


def sklearn_split_indices(src: Source, fractions: list[float], seed: int, stratify: bool = False):
    """``split_indices`` as it was, on scikit-learn (the reference)."""
    n = len(src)
    fr = list(fractions) + [0.0] * (3 - len(fractions))
    strat = src.y.numpy() if stratify else None
    if strat is not None and np.bincount(strat).min(initial=n) < 3:
        strat = None

    def cut(idx, frac, labels):
        k = int(round(frac * len(idx))) if frac > 0 else 0
        if k == 0:
            return idx, idx[:0]
        k = min(max(k, 1), len(idx) - 1)
        try:
            a, b = train_test_split(idx, test_size=k, random_state=seed, stratify=labels)
        except ValueError:
            a, b = train_test_split(idx, test_size=k, random_state=seed)
        return np.sort(a), np.sort(b)

    if src.fixed_splits:
        train, test = src.fixed_splits["train"], src.fixed_splits.get("test", np.array([], int))
        if len(src.fixed_splits.get("val", ())):
            return {"train": train, "val": src.fixed_splits["val"], "test": test}
        val_frac = fr[1] / max(fr[0] + fr[1], 1e-9)
        train, val = cut(train, val_frac, strat[train] if strat is not None else None)
        return {"train": train, "val": val, "test": test}
    idx = np.arange(n)
    rest, test = cut(idx, fr[2], strat)
    val_frac = fr[1] / max(fr[0] + fr[1], 1e-9)
    train, val = cut(rest, val_frac, strat[rest] if strat is not None else None)
    return {"train": train, "val": val, "test": test}


def layouts(n: int, rng: np.random.Generator) -> dict[str, np.ndarray | None]:
    """Class layouts for ``n`` samples: none, balanced, skewed, tiny classes, many classes."""
    out: dict[str, np.ndarray | None] = {"plain": None, "two": np.arange(n) % 2,
                                         "random3": rng.integers(0, 3, n)}
    skew = np.zeros(n, np.int64)
    skew[: max(n // 10, 1)] = 1
    out["skewed"] = rng.permutation(skew)
    if n >= 3:
        single = np.zeros(n, np.int64)
        single[-1] = 2  # a class with one member: sklearn refuses to stratify
        out["singleton"] = single
        pair = np.arange(n) % 3
        pair[:2] = 7  # a class with exactly two members
        out["pair"] = pair
    out["many"] = np.arange(n) // 2  # n/2 classes of two: fewer test rows than classes
    out["sparse_ids"] = (np.arange(n) % 4) * 5  # class ids with gaps
    return out


def test_shuffle_split_is_sklearns_train_test_split():
    rng = np.random.default_rng(0)
    cases = raised = 0
    for n in (2, 3, 4, 5, 7, 10, 16, 23, 50, 101, 300):
        tests = sorted({1, max(n // 10, 1), max(n // 4, 1), n // 2 or 1, n - 1})
        for (name, labels), k, seed in itertools.product(layouts(n, rng).items(), tests, (0, 1, 2024)):
            try:
                want = train_test_split(np.arange(n), test_size=k, random_state=seed, stratify=labels)
            except ValueError:
                with pytest.raises(ValueError):
                    shuffle_split(n, k, seed, labels)
                raised += 1
            else:
                got = shuffle_split(n, k, seed, labels)
                for w, g in zip(want, got, strict=True):  # train, test: same indices in the same order
                    assert g.dtype == w.dtype and np.array_equal(g, w), (n, name, k, seed)
            cases += 1
    assert cases - raised > 300 and raised > 50  # both branches are exercised, hundreds of splits


@pytest.mark.parametrize("n_test", [0, -1, 5, 6])
def test_out_of_range_test_size_raises_as_sklearn(n_test):
    with pytest.raises(ValueError):
        train_test_split(np.arange(5), test_size=n_test, random_state=0)
    with pytest.raises(ValueError):
        shuffle_split(5, n_test, 0)


def sources(rng: np.random.Generator):
    """Sources as the data pipeline sees them: classes (incl. tiny ones), values, fixed splits."""
    for n in (3, 5, 9, 20, 64, 150, 331):
        x = rng.normal(size=(n, 2)).astype(np.float32)
        yield f"balanced{n}", classification(x, np.arange(n) % 3), True
        y = rng.integers(0, 4, n)
        y[0] = 4  # one sample of class 4: not stratified (< 3 per class)
        yield f"tiny{n}", classification(x, y), True
        skew = np.zeros(n, np.int64)
        skew[:3] = 1  # three of class 1: stratified at first, a cut may still refuse it
        yield f"skew{n}", classification(x, skew), True
        yield f"values{n}", regression(x, rng.normal(size=(n, 1))), False
        perm = rng.permutation(n)
        cut = max(n * 2 // 3, 1)
        fixed = {"train": np.sort(perm[:cut]), "test": np.sort(perm[cut:])}
        yield f"fixed{n}", classification(x, np.arange(n) % 2, fixed_splits=fixed), True
        with_val = dict(fixed, val=fixed["test"][:1])
        yield f"fixed_val{n}", classification(x, np.arange(n) % 2, fixed_splits=with_val), True


FRACTIONS = ([0.8, 0.1, 0.1], [0.7, 0.15, 0.15], [0.9, 0.1], [0.5, 0.5], [0.6, 0.2, 0.2], [1.0],
             [0.34, 0.33, 0.33])


def test_split_indices_equals_its_sklearn_version():
    rng = np.random.default_rng(1)
    count = 0
    for (name, src, stratify), fractions, seed in itertools.product(list(sources(rng)), FRACTIONS, (0, 17)):
        try:
            want = sklearn_split_indices(src, fractions, seed, stratify)
        except ValueError:  # sklearn refused a 1-sample cut: now one line for the user
            with pytest.raises(LiandanError):
                split_indices(src, fractions, seed, stratify)
            continue
        got = split_indices(src, fractions, seed, stratify)
        assert got.keys() == want.keys()
        for k in want:
            assert np.array_equal(got[k], want[k]), (name, fractions, seed, k)
        count += 1
    assert count > 400


def test_one_sample_left_to_split_is_one_line():
    x = torch.zeros(4, 2)
    src = Source(x=x, y=torch.tensor([0, 1, 0, 1]), task="classify", targets="class", num_classes=2,
                 fixed_splits={"train": np.array([0]), "test": np.array([1, 2, 3])})
    with pytest.raises(LiandanError, match="cannot be split"):
        split_indices(src, [0.2, 0.8], 0)
