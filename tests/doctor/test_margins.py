"""Rule signals (the statistic each rule compares, and how far it is from its threshold) and the
bench's verdict margins: each rule's signal is exactly its gate, and the verdict computed from
the signals is the one the live doctor wrote."""

from __future__ import annotations

import math

import pytest

from liandan.doctor.bench import load_cases
from liandan.doctor.rules._signal import SIGNALS, above, all_of, any_of, below, count, exceeds, flag, negate
from liandan.registry import RULES
from tests.doctor.conftest import run_dir


def test_every_rule_has_a_signal():
    import liandan.doctor.rules  # noqa: F401  (registers the rules and their signals)

    assert set(RULES.names()) == set(SIGNALS)


def test_margins_are_log2_factors_in_the_checks_own_units():
    assert above("update_ratio", 0.02, 0.01).margin == pytest.approx(1.0)  # 2× above
    assert below("update_ratio", 0.02, 0.01).margin == pytest.approx(-1.0)  # misses by 2×
    s = above("dead", 0.7 * 2 / (0.3 + 0.7 * 2), 0.7, "odds")  # odds 2.33 → 4.67
    assert s.fires and s.margin == pytest.approx(1.0)
    assert above("loss_rise", 1.05, 2.0, "excess").margin == pytest.approx(math.log2(0.05))
    assert not above("x", 1.0, 1.0).fires and above("x", 1.0, 1.0, strict=False).fires  # the rule's own operator
    nan = above("x", float("nan"), 1.0)
    assert not nan.fires and nan.margin == -math.inf and below("x", float("nan"), 1.0).margin == -math.inf
    assert count("bad_steps", 0).margin == -math.inf and count("bad_steps", 1).margin == pytest.approx(1.0)
    assert exceeds("loss", 2.0, 1.0).margin == pytest.approx(1.0) and flag("mismatch", True).margin == math.inf


def test_combinators_take_the_check_closest_to_flipping():
    a, b = above("a", 8.0, 1.0), above("b", 0.5, 1.0)  # +3, -1
    both, either = all_of(a, b), any_of(a, b)
    assert not both.fires and both.margin == pytest.approx(-1.0) and both.decisive().name == "b"
    assert either.fires and either.margin == pytest.approx(3.0) and either.decisive().name == "a"
    n = negate(b)
    assert n.fires and n.margin == pytest.approx(1.0) and n.decisive().name == "b"
    assert all_of(a, b).find("b") is b


QUICK = [c for c in load_cases() if c.quick]


@pytest.mark.parametrize("case", QUICK, ids=lambda c: c.name)
def test_signals_are_the_rules_gates_and_give_the_live_verdict(case, quick_bench):
    from liandan.doctor.bench.margins import rule_signals, verdict
    from liandan.doctor.view import view_from_run_dir

    view = view_from_run_dir(run_dir(quick_bench, case.name))
    sigs = rule_signals(view)
    for code, s in sigs.items():
        assert s.fires == (RULES.get(code).fn(view) is not None), code
        assert (s.margin > 0) == s.fires or s.margin == 0, code  # the margin's sign is the verdict
    v = verdict(case, sigs, view)  # a rule that spares a code decides on the run itself
    res = quick_bench["results"][case.name]
    assert v["found"] == sorted(res["found"]) and v["ok"] == res["detected"]
    assert (v["margin"] > 0) == v["ok"]
