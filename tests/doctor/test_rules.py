"""Registry-driven rule tests: every registered rule is documented, has faulty bench cases that
trigger it (one marked quick, run here at two seeds) and stays silent on the healthy quick cases."""

from __future__ import annotations

import pytest

from liandan.doctor import CODES
from liandan.doctor.bench import load_cases
from liandan.doctor.knowledge import knowledge
from liandan.registry import RULES

ALL = load_cases()
RULE_NAMES = RULES.names()


def test_rule_codes_are_the_stable_codes():
    assert set(RULE_NAMES) <= set(CODES)
    assert set(CODES) - set(RULE_NAMES) == {"ood_inputs"}  # judged by liandan ood, merged via add_finding


@pytest.mark.parametrize("code", RULE_NAMES)
def test_rule_has_knowledge_and_cases(code):
    entry = knowledge()[code]
    assert entry["causes"] and entry["fixes"] and entry["detect"]
    faulty = [c for c in ALL if code in c.expect]
    assert len(faulty) >= 3, f"{code}: needs several distinct faulty cases"
    assert any(c.quick for c in faulty), f"{code}: no quick case for the test suite"
    assert RULES.get(code).description


def test_bench_size_and_expectations_are_valid():
    faulty = [c for c in ALL if not c.healthy]
    healthy = [c for c in ALL if c.healthy]
    assert len(faulty) >= 40 and len(healthy) >= 15
    for c in ALL:
        assert set(c.expect) | set(c.allow) <= set(RULE_NAMES), c.name
    models = {c.recipe["model"]["name"] for c in faulty}
    assert {"mlp", "lenet5"} <= models


SEEDS = ["quick_bench", "quick_bench_seed1"]


@pytest.mark.parametrize("bench", SEEDS)
@pytest.mark.parametrize("code", RULE_NAMES)
def test_rule_fires_on_its_quick_case(code, bench, request):
    results = request.getfixturevalue(bench)["results"]
    for case in [c for c in ALL if c.quick and code in c.expect]:
        res = results[case.name]
        assert code in res["found"], res
        assert not res["wrong"], res


@pytest.mark.parametrize("bench", SEEDS)
def test_healthy_quick_cases_have_no_findings(bench, request):
    qb = request.getfixturevalue(bench)
    healthy = [c.name for c in ALL if c.quick and c.healthy]
    assert len(healthy) >= 3
    for name in healthy:
        assert qb["results"][name]["found"] == [], name
    doc = qb["doc"]
    assert doc["recall"] == 1.0 and doc["precision"] == 1.0 and doc["false_alarm_rate"] == 0.0


@pytest.mark.parametrize("hidden, patch", [(4, 64), ([4, 4], [64, 64])])
def test_width_rules_read_a_recurrent_models_int_hidden(hidden, patch):
    """``hidden: 4`` (a GRU) made underfitting raise on ``list(4)`` — and the live engine swallows rule
    errors, so the rule was silent on every recurrent model. Its fix keeps the option's form."""
    from liandan.doctor.rules.underfitting import underfitting
    from liandan.doctor.view import RunView
    from liandan.recipe import load_recipe

    rc = load_recipe({"name": "w", "data": {"source": "sine"}, "model": {"name": "gru" if isinstance(hidden, int)
                     else "mlp", "hidden": hidden}, "optim": {"name": "sgd", "lr": 1e-4}})
    n = 40
    recs = [{"type": "steps", "epoch": 0, "steps": list(range(1, n + 1)), "loss": [1.0] * n, "grad_norm": [1.0] * n,
             "applied": [True] * n},
            {"type": "epoch", "epoch": 0, "step": n, "train": {"loss": 1.0}, "val": {"loss": 1.0, "r2": 0.0}}]
    f = underfitting(RunView(rc, "regress", 0, (20, 1), recs))
    assert f is not None
    assert {"model.hidden": patch} in [fx.patch for fx in f.fixes]


@pytest.mark.parametrize("target_min, fires", [(0.3, False), (-0.2, False), (-1.4, True)])
def test_non_negative_regression_output_against_the_targets_reach(target_min, fires):
    """A sigmoid/ReLU output (never negative) regressing standardised targets that reach below -0.5
    is out of range; targets that stay above (or at) 0 are not — and a positive minimum must not
    break the ratio (a log of a negative number raised, and the guard silenced the whole rule)."""
    from liandan.doctor.rules.loss_output_mismatch import loss_output_mismatch
    from liandan.doctor.view import RunView
    from liandan.recipe import load_recipe

    rc = load_recipe({"name": "o", "data": {"source": "sine"}, "model": {"name": "mlp", "output": "sigmoid"}})
    out = {"mean": 0.5, "std": 0.1, "min": 0.2, "max": 0.9, "dim": 1}
    lab = {"kind": "value", "min": target_min, "max": 1.4, "mean": 0.0, "std": 1.0}
    recs = [{"type": "steps", "epoch": 0, "steps": [1, 2, 3], "loss": [1.0] * 3, "grad_norm": [1.0] * 3,
             "applied": [True] * 3},
            {"type": "probe", "step": 1, "output": out, "labels": lab}, {"type": "probe", "step": 3, "output": out}]
    f = loss_output_mismatch(RunView(rc, "regress", 0, (20,), recs))
    assert (f is not None) == fires
    if fires:
        assert {"model.output": "logits"} in [fx.patch for fx in f.fixes]
