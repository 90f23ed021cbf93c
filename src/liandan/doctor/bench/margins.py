"""How far a bench case's verdict is from flipping.

Every rule exposes the statistic it compares (:mod:`liandan.doctor.rules._signal`): its margin
is log2 of the factor by which the signal clears (> 0) or misses (< 0) its threshold. A case's
verdict also depends on suppression (a root cause hides its consequences; ``underfitting`` is
reported only alone), so a code is *reported* when its rule fires and none of its suppressors
does — margin ``min(m_code, -m_suppressor...)`` — and the verdict holds when every expected code
is reported and no code outside ``expect`` + ``allow`` is: the verdict margin is the smallest of
those terms, and the term that sets it names the rule and the check closest to flipping.
``bench/doctor_margins.py`` runs the quick cases over seeds and thread counts with it.
"""

from __future__ import annotations

import math
from typing import Any

from liandan.doctor.bench import Case
from liandan.doctor.rules._signal import SIGNALS, Signal
from liandan.doctor.view import RunView


def rule_signals(view: RunView) -> dict[str, Signal]:
    """code -> the rule's signal, for every rule that runs on this view's mode at the run's end."""
    from liandan.doctor.engine import rules_for

    return {e.name: SIGNALS[e.name](view) for e in rules_for("end", view.mode)}


def suppressors(code: str, codes: list[str], view: RunView | None = None) -> list[str]:
    """The codes whose firing hides ``code`` (all others for a generic rule); with ``view``, less the
    rules that spare it on that run (:func:`liandan.doctor.engine.hidden_by`)."""
    from liandan.doctor.engine import hidden_by
    from liandan.registry import RULES

    if RULES.get(code).extra.get("generic"):
        return [c for c in codes if c != code]
    if view is None:
        return [c for c in codes if code in RULES.get(c).extra.get("suppresses", ())]
    return [c for c in codes if code in hidden_by(RULES.get(c), view)]


def reported(code: str, sigs: dict[str, Signal], by: list[str] | None = None,
             view: RunView | None = None, _seen: set[str] | None = None) -> tuple[bool, float, str]:
    """(reported?, margin, the code that sets the margin): ``code`` fires and no suppressor of it
    fires; the margin counts only the suppressors in ``by`` (default: all)."""
    sup = suppressors(code, list(sigs), view)
    # a suppressor hides ``code`` only when it is reported itself (the engine's fixed point)
    seen = (_seen or set()) | {code}
    fires = sigs[code].fires and not any(sigs[o].fires and (o in seen or reported(o, sigs, view=view, _seen=seen)[0])
                                         for o in sup)
    margin, which = sigs[code].margin, code
    for o in sup:
        if (by is None or o in by) and -sigs[o].margin < margin:
            margin, which = -sigs[o].margin, o
    return fires, margin, which


def verdict(case: Case, sigs: dict[str, Signal], view: RunView | None = None) -> dict[str, Any]:
    """``{"ok", "margin", "code", "role", "check", "value", "threshold", "expected_margin",
    "found"}``: whether the case's verdict holds on these signals and how far it is from
    flipping. ``code`` is the code closest to flipping, ``role`` what it must do: ``expected``
    (be reported) or ``wrong`` (not be reported; for a healthy case, the rule closest to a false
    alarm); ``by`` is the rule whose signal sets the margin — ``code`` itself, or a rule that
    suppresses it (which must stay silent for an expected code; which keeps a wrong code hidden —
    only expected or allowed ones count: one wrong finding hiding another does not save the
    verdict); ``check``, ``value``, ``threshold``: its comparison closest to flipping. ``view``:
    the run the signals come from (a rule's ``spares`` depend on it)."""
    ok, terms = True, []
    found = sorted(c for c in sigs if reported(c, sigs, view=view)[0])
    fine = set(case.expect) | set(case.allow)
    for c in sigs:
        if c in case.expect:
            fires, m, which = reported(c, sigs, view=view)
            ok = ok and fires
            terms.append((m, c, which, "expected"))
        elif c not in fine:
            fires, m, which = reported(c, sigs, by=[o for o in sigs if o in fine], view=view)
            ok = ok and not fires
            terms.append((-m, c, which, "wrong"))
    m, code, by, role = min(terms, key=lambda t: t[0])
    d = sigs[by].decisive()
    exp = [t[0] for t in terms if t[3] == "expected"]
    return {"ok": ok, "margin": m, "code": code, "by": by, "role": role, "check": d.name, "value": d.value,
            "threshold": d.threshold, "expected_margin": min(exp) if exp else None, "found": found}


def factor(margin: float) -> str:
    """A margin as the factor it stands for: "3.1×"; "inf" for a fact, not a measurement."""
    if math.isinf(margin):
        return "inf"
    x = 2 ** abs(margin)
    return f"{x:.3g}×" if x < 1000 else ">999×"
