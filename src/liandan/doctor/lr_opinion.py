"""One opinion on the learning rate: the doctor judges a rate against the LR range test's curve.

The update/weight ratio and an oscillating loss say that steps are large; whether they are *too*
large for this recipe is what the range test (Smith 2017; :mod:`liandan.training.lr_finder`)
measures directly. So ``lr_too_high`` fires only for a rate above the test's usable range and
``lr_too_low`` only for one below it, and ``liandan lr-find``'s suggestion never draws either.

Where the curve comes from, first hit wins:
1. an ``lr_find`` record among the view's records (the live doctor saved it in
   ``doctor_probes.jsonl``, so ``liandan doctor RUN_DIR`` re-judges on the same numbers);
2. the range test's cache (``liandan lr-find`` on the same recipe wrote it, or an earlier diagnosis);
3. the doctor runs the test itself, with ``lr-find``'s defaults — only when a rule is about to
   judge the rate (its other checks fired), so healthy runs pay nothing. The test trains a fresh
   copy of the recipe's model; the running job's random streams are saved and restored around it.

A flat curve (the loss never fell 5 % below its start, even over the 4× longer sweep ``lr_find``
then runs) gives no opinion: the
rules then judge by their own checks alone, as they do with ``LIANDAN_DOCTOR_RANGE_TEST=0``
(which turns step 3 off).
"""

from __future__ import annotations

import os
import random
from typing import Any

RECORD = "lr_find"
# Where the test has no opinion (a flat sweep), a rate this many times from its optimizer's typical
# one (:func:`liandan.doctor.view.typical_lr`) is judged against that rate instead of a range.
TYPICAL_FAR = 10.0
_MEMO: dict[str, dict[str, Any] | None] = {}  # finder key -> summary (None: the test failed here)


def _record(view: Any) -> dict[str, Any] | None:
    return next((r for r in view.records if r.get("type") == RECORD), None)


def recorded(view: Any) -> dict[str, Any] | None:
    """The range test already consulted for this view, if it gave an opinion (a curve that fell)."""
    rec = _record(view)
    return rec if rec is not None and rec.get("suggestion") and rec.get("informative", True) else None


def usable_range(view: Any, run: bool = True) -> dict[str, Any] | None:
    """``{"suggestion", "min_lr", "low", "high", "source"}`` of the recipe's range test, or None
    when there is none and ``run`` is off (or the test cannot run on this recipe)."""
    if _record(view) is not None:  # consulted before (live, or saved in the probe log)
        return recorded(view)
    from liandan.training.lr_finder import cached, finder_key

    try:
        key = finder_key(view.recipe)
    except Exception:  # a recipe the key cannot describe: no opinion rather than a wrong one
        return None
    doc = _MEMO.get(key) or cached(key)
    source = "cache"
    if doc is None and key not in _MEMO:
        if not run or os.environ.get("LIANDAN_DOCTOR_RANGE_TEST", "1") == "0":
            return None
        doc, source = _run(view.recipe), "doctor"
    _MEMO[key] = doc
    if doc is None:
        return None
    keys = ("suggestion", "min_lr", "low", "high", "points", "key", "informative", "diverged_at")
    rec = {"type": RECORD, "source": source, **{k: doc.get(k) for k in keys}}
    view.records.append(rec)
    sink = view.extra.get("sink")
    if sink is not None:  # the live doctor keeps it in its probe log
        sink(rec)
    return rec if rec.get("informative", True) else None  # a flat curve: no opinion


def _run(recipe: Any) -> dict[str, Any] | None:
    """The range test on ``recipe`` (lr-find's defaults), without touching the caller's RNG."""
    import numpy as np
    import torch

    from liandan.training.lr_finder import finder_key, lr_find, summary

    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return None  # one process would train alone while the others wait in a collective
    except ImportError:
        pass
    py, npy = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng():
            res = lr_find(recipe)  # caches its result for the next diagnosis of this recipe
    except Exception:  # noqa: BLE001 (no curve — diverged at once, a model it cannot rebuild — is no opinion)
        return None
    finally:
        random.setstate(py)
        np.random.set_state(npy)
    return summary(finder_key(recipe), res)


def rate_above_range(view: Any) -> set[str]:
    """``{"lr_too_high"}`` when the rate is above the range test's usable range (a test this
    diagnosis already consulted). A rule that would hide ``lr_too_high`` as its consequence —
    exploding gradients, a NaN, ReLUs knocked out — spares it then: the rate is the cause upstream
    of both and is reported beside them; otherwise (an init, unnormalised inputs) it stays hidden.
    A test consulted whose sweep was flat gives no range: the optimizer's typical rate stands in then,
    for a rate a decade or more above it (a fine-tuned LeNet under Nesterov at 0.5, 50× the usual 0.01,
    whose sweep never fell before it broke at 6.6)."""
    from liandan.doctor.view import typical_lr

    rng = recorded(view)
    if rng is None:
        flat = _record(view) is not None
        return {"lr_too_high"} if flat and view.lr >= TYPICAL_FAR * typical_lr(view.optimizer) else set()
    return {"lr_too_high"} if view.lr > rng["high"] else set()


def clear_memo() -> None:
    """Forget the in-process results (tests that change the cache behind the doctor's back)."""
    _MEMO.clear()
