"""Run the registered rules over a :class:`~liandan.doctor.view.RunView`.

A rule is registered with ``@register_rule(code, phase=..., suppresses=(...))``:
- ``phase``: the earliest moment it can judge — ``step`` (probe steps, e.g. non-finite loss),
  ``epoch`` (epoch ends) or ``end`` (the finished run, e.g. overfitting); it also runs later.
- ``suppresses``: codes that are consequences of this one (zero init makes ReLU units dead):
  when both fire only the root cause is reported, as AutoTrainer keeps only its
  highest-priority problem (Zhang et al. ICSE 2021, ``problem_evaluation``).
- ``spares``: ``fn(view) -> codes`` it does not hide on this run although it suppresses them —
  the root cause lies upstream of both: gradients that explode because the rate is above the range
  test's usable range are the rate's consequence, so ``lr_too_high`` is reported beside them.
- ``generic=True`` (underfitting): reported only when no more specific rule explains the run.
"""

from __future__ import annotations

import os
from typing import Any

from liandan.doctor.findings import Finding, severity_rank
from liandan.doctor.view import PHASES, RunView


def rules_for(phase: str, mode: str = "train") -> list[Any]:
    from liandan.registry import RULES

    out = []
    for e in RULES.entries():
        if PHASES.index(e.extra.get("phase", "end")) > PHASES.index(phase):
            continue
        if mode not in e.extra.get("modes", ("train", "probe")):
            continue
        out.append(e)
    return out


def hidden_by(entry: Any, view: RunView) -> set[str]:
    """The codes a fired rule hides on this run: its ``suppresses`` less what ``spares(view)`` keeps."""
    hidden = set(entry.extra.get("suppresses", ()))
    spares = entry.extra.get("spares")
    return hidden - set(spares(view)) if spares else hidden


def run_rules(view: RunView) -> list[Finding]:
    """Every applicable rule's finding, consequences suppressed, most severe first."""
    from liandan.registry import RULES

    found: dict[str, Finding] = {}
    for e in rules_for(view.phase, view.mode):
        try:
            f = e.fn(view)
        except Exception:  # a rule bug must not take the training run down with it
            if os.environ.get("LIANDAN_DOCTOR_STRICT"):
                raise
            continue
        if f is not None:
            found[f.code] = f
    generic = {c for c in found if RULES.get(c).extra.get("generic") and len(found) > 1}
    # a hidden finding hides nothing itself: dead units hidden behind exploding gradients do not
    # also hide the rate those gradients spare. Iterate to the fixed point (a few passes at most).
    drop = set().union(*(hidden_by(RULES.get(c), view) for c in found)) | generic
    for _ in range(len(found)):
        again = set().union(*(hidden_by(RULES.get(c), view) for c in found if c not in drop)) | generic
        if again == drop:
            break
        drop = again
    kept = [f for c, f in found.items() if c not in drop]
    return sorted(kept, key=lambda f: (-severity_rank(f.severity), f.step if f.step is not None else 1 << 60))
