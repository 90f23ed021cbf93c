"""What a rule compares: its decision as a formula of threshold checks, so the numbers that decide
a verdict also say how far the verdict is from flipping.

Each rule module defines ``signal(view) -> Signal`` (registered with :func:`signal_of`) and its
rule fires only when ``signal(view).fires``. A :class:`Signal` is one comparison (``value`` against
``threshold``) or an ``all_of``/``any_of``/``negate`` of others. Its ``margin`` is how far the
verdict is from flipping, as log2 of a factor: +1 = the signal clears its threshold by 2×, -1 =
it misses by 2× (rules stay silent), 0 = on the edge. Scales, in each check's own units:

- ``ratio`` for magnitudes (update/weight ratio, gradient growth, loss ratios): log2(value / threshold);
- ``excess`` for ratios that are ≥ 1 by construction (a loss over its own minimum): log2 of
  (value − 1) / (threshold − 1), so a loss that never rose (1.05 against 2) is far from firing;
- ``odds`` for fractions in [0, 1] (dead or saturated share, quality, loss drop, accuracy gap):
  log2 of the odds ratio, so 0.7 → 0.82 and 0.7 → 0.54 both count as 2× (values clipped to
  [0.001, 0.999]);
- ``flag`` for facts that are not a trajectory's luck (a loss/label mismatch, a NaN seen or not):
  ±inf.

``all_of`` takes the smallest margin (the condition closest to flipping decides), ``any_of`` the
largest. ``fires`` is computed with the rule's own comparison (strict or not, NaN never passes),
so it is exactly the rule's gate; ``margin`` only measures it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SIGNALS: dict[str, Callable[[Any], Signal]] = {}
_EPS = 1e-3
INF = float("inf")


def signal_of(code: str) -> Callable:
    """Register ``fn(view) -> Signal`` as the statistic rule ``code`` compares."""
    def deco(fn: Callable) -> Callable:
        SIGNALS[code] = fn
        return fn
    return deco


@dataclass(frozen=True)
class Signal:
    name: str
    fires: bool
    margin: float
    value: float | None = None
    threshold: float | None = None
    parts: tuple[Signal, ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return self.fires

    def decisive(self) -> Signal:
        """The comparison that sets the margin (the one closest to flipping the verdict)."""
        if not self.parts:
            return self
        part = min(self.parts, key=lambda p: abs(abs(p.margin) - abs(self.margin)))  # negate flips the sign
        return part.decisive()

    def find(self, name: str) -> Signal | None:
        """The first part (depth first, this one included) called ``name``."""
        if self.name == name:
            return self
        return next((f for p in self.parts if (f := p.find(name)) is not None), None)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "fires": self.fires, "margin": self.margin}
        if self.value is not None:
            d.update(value=self.value, threshold=self.threshold)
        if self.parts:
            d["parts"] = [p.to_dict() for p in self.parts]
        return d


def _log_factor(value: float, threshold: float, scale: str) -> float:
    """log2 of how many times ``value`` exceeds ``threshold`` on ``scale`` (negative: below)."""
    if scale == "odds":
        odds = lambda p: (lambda q: q / (1 - q))(min(max(p, _EPS), 1 - _EPS))  # noqa: E731
        return math.log2(odds(value) / odds(threshold))
    if scale == "excess":
        value, threshold = value - 1, threshold - 1
    return math.log2(value / threshold) if value > 0 else -INF  # 0 (or less) is infinitely far below


def _compare(name: str, value: float, threshold: float, scale: str, above: bool, strict: bool) -> Signal:
    value = float(value)
    if math.isnan(value):
        return Signal(name, False, -INF, value, threshold)
    if above:
        fires = value > threshold if strict else value >= threshold
    else:
        fires = value < threshold if strict else value <= threshold
    m = _log_factor(value, threshold, scale)
    return Signal(name, fires, m if above else -m, value, threshold)


def above(name: str, value: float, threshold: float, scale: str = "ratio", strict: bool = True) -> Signal:
    """``value > threshold`` (``>=`` with ``strict=False``)."""
    return _compare(name, value, threshold, scale, True, strict)


def below(name: str, value: float, threshold: float, scale: str = "ratio", strict: bool = True) -> Signal:
    """``value < threshold`` (``<=`` with ``strict=False``)."""
    return _compare(name, value, threshold, scale, False, strict)


def exceeds(name: str, a: float, b: float) -> Signal:
    """``a > b`` for two measurements of the same kind (losses): margin log2(a / b)."""
    fires = a > b
    if a > 0 and b > 0:
        return Signal(name, fires, math.log2(a / b), a, b)
    return Signal(name, fires, INF if fires else -INF, a, b)


def flag(name: str, fires: bool) -> Signal:
    """A fact, not a measured quantity: infinitely far from flipping."""
    return Signal(name, bool(fires), INF if fires else -INF)


def count(name: str, n: int) -> Signal:
    """``n > 0`` for a count (bad steps): the edge sits halfway between 0 and 1, so one counts as 2×."""
    return above(name, n, 0.5)


def all_of(*parts: Signal, name: str = "all") -> Signal:
    return Signal(name, all(p.fires for p in parts), min((p.margin for p in parts), default=INF), parts=parts)


def any_of(*parts: Signal, name: str = "any") -> Signal:
    return Signal(name, any(p.fires for p in parts), max((p.margin for p in parts), default=-INF), parts=parts)


def negate(s: Signal, name: str | None = None) -> Signal:
    return Signal(name or f"not {s.name}", not s.fires, -s.margin, parts=(s,))


def silent(name: str = "not applicable") -> Signal:
    """The rule has nothing to compare on this run (no probes, no inputs record, ...)."""
    return flag(name, False)


# A classifier's quality (accuracy from chance to 1) under which a run falls short of its ceiling: a rate
# outside the range test's range is then tested, and a ReLU layer mostly dead is a finding
# (a fine-tune at its pre-training rate ends at 0.81 where the test's rate reaches 0.94 — vig176)
CEILING = 0.85


def below_ceiling(view: Any) -> Signal:
    """:func:`learns_poorly` with a classifier's bar at :data:`CEILING` (other tasks: their usual bar)."""
    return learns_poorly(view, CEILING if view.is_classification else None)


def learns_poorly(view: Any, threshold: float | None = None) -> Signal:
    """:meth:`RunView.learns_poorly` as a signal: quality below the bar (odds), or in a probing run
    the failed overfit check; with no finished epoch, a loss that fell < 20 %."""
    if view.mode == "probe":
        return flag("overfit check failed", bool(view.overfit_check) and not view.overfit_check.get("passed", True))
    thr = view.poor() if threshold is None else threshold
    q = view.quality()
    if math.isnan(q):
        d = view.loss_drop()
        return flag("no loss drop", True) if math.isnan(d) else below("loss_drop", d, 0.2, "odds")
    return below("quality", q, thr, "odds")


def signal(code: str, view: Any) -> Signal:
    """The signal of rule ``code`` on ``view`` (imports the rules)."""
    import liandan.doctor.rules  # noqa: F401  (registers every rule and its signal)

    return SIGNALS[code](view)
