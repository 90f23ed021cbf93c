"""The grown doctor bench: the transcribed cases (``real_*.yaml``) parse, cite a source, carry
the split their name hashes to (fixed before anything ran), and validate as recipes together with
their fixed counterparts; the runner scores the dev and held-out halves apart. The slow test runs
a few held-out cases end to end."""

from __future__ import annotations

import json
from importlib import resources

import pytest
import yaml

from liandan.doctor.bench import SPLITS, Case, format_seeds, load_cases, parse_cases, split_of
from liandan.errors import LiandanError
from liandan.registry import RULES

REAL = load_cases(["real_*"])
INJECTIONS = {None, "softmax_head", "sigmoid_head", "relu_head"}


def _raw_real_files() -> dict[str, list[dict]]:
    root = resources.files("liandan.doctor.bench")
    return {f.name: yaml.safe_load(f.read_text()) for f in root.iterdir()
            if f.name.startswith("real_") and f.name.endswith(".yaml")}


def test_split_is_a_fixed_hash_of_the_name():
    # pinned: changing the hash (or its parity rule) would silently move cases between halves
    assert [split_of(n) for n in ("a", "b", "c", "d")] == ["dev", "dev", "heldout", "heldout"]
    assert split_of("real_so33969059_softmax_single_output_regression") == split_of(
        "real_so33969059_softmax_single_output_regression")


def test_every_real_case_cites_a_source_and_writes_its_hashed_split():
    raw = _raw_real_files()
    assert len(raw) >= 5
    for fname, entries in raw.items():
        for d in entries:
            assert "split" in d, f"{fname}: {d['name']} has no split written"  # written, not defaulted
            assert d["split"] == split_of(d["name"]), d["name"]
            assert isinstance(d.get("source"), str) and len(d["source"]) > 20, d["name"]
    assert {c.split for c in REAL} == set(SPLITS)


def test_grown_bench_size_and_codes():
    faulty = [c for c in REAL if not c.healthy]
    healthy = [c for c in REAL if c.healthy]
    assert len(faulty) >= 60 and len(healthy) >= 20
    for c in REAL:
        assert set(c.expect) | set(c.allow) <= set(RULES.names()), c.name
        assert c.inject in INJECTIONS, c.name
        assert c.healthy or c.fix, f"{c.name}: a faulty case needs the fix that shows its fault"
    tasks = {c.recipe.get("task") or c.recipe["data"]["source"] for c in REAL}
    models = {c.recipe["model"]["name"] for c in REAL}
    assert {"gpt", "lstm", "gru", "lenet5", "resnet18", "mlp", "transformer", "rnn"} <= models
    assert {"regress", "sine", "arith", "digits", "shapes"} <= tasks
    assert any(c.pretrain for c in faulty) and any(c.pretrain for c in healthy)  # fine-tuning cases
    for s in SPLITS:  # both halves hold faulty and healthy cases
        assert any(c.split == s and c.healthy for c in REAL) and any(c.split == s and not c.healthy for c in REAL)


@pytest.mark.parametrize("case", REAL, ids=lambda c: c.name)
def test_case_and_its_fix_are_valid_recipes(case: Case):
    from liandan.recipe import load_recipe

    load_recipe(case.recipe, {"seed": 1})
    if case.fix:
        fix = {k: v for k, v in case.fix.items() if k != "inject"}
        load_recipe(case.recipe, fix)
        assert case.fix.get("inject", case.inject) in INJECTIONS
    if case.pretrain:
        base = load_recipe(case.pretrain)
        assert base.model.name == case.recipe["model"]["name"]


def test_split_filter_patterns_and_bad_split():
    held = load_cases(["real_*"], split="heldout")
    assert held and all(c.split == "heldout" and c.group.startswith("real_") for c in held)
    assert {c.name for c in load_cases(["real_*"], split="dev")} | {c.name for c in held} == {c.name for c in REAL}
    by_code = load_cases(["symmetry"])  # a code selects the legacy group and every case expecting it
    assert {c.group for c in by_code} >= {"symmetry", "real_units"} and all("symmetry" in c.expect for c in by_code)
    legacy = [c for c in by_code if c.group == "symmetry"]
    assert legacy and all(c.split == "dev" and c.source is None for c in legacy)  # tuned on before the split
    with pytest.raises(LiandanError, match="split"):
        load_cases(split="test")
    with pytest.raises(LiandanError, match="split"):
        parse_cases("- {name: x, split: train, recipe: {}}", "g")
    with pytest.raises(LiandanError, match="unknown bench case"):
        load_cases(["real_nothing_*"])


def test_format_seeds_reports_each_half_and_the_gap():
    def sc(r: float) -> dict:
        return {"mean": r, "sd": 0.01, "min": r - 0.01, "max": r + 0.01}

    keys = ("recall", "precision", "false_alarm_rate", "repair_success")
    doc = {"offsets": [0, 1, 2], "wall_s": 10.0,
           "seeds": [{"results": [{"split": "dev"}, {"split": "heldout"}, {"split": "heldout"}]}],
           "scores": {k: sc(0.9) for k in keys},
           "split_scores": {"dev": {k: sc(0.95) for k in keys}, "heldout": {k: sc(0.85) for k in keys}},
           "gap": {k: -0.1 for k in keys}}
    lines = format_seeds(doc).splitlines()
    assert lines[0].startswith("split dev (1 cases): recall 0.950 ± 0.010")
    assert lines[1].startswith("split heldout (2 cases): recall 0.850")
    assert lines[2].startswith("gap (heldout − dev): recall -0.100")
    assert lines[-1].startswith("seed offsets 0,1,2 (mean ± sd [min–max]): recall 0.900")


HELD_OUT_SAMPLE = ["real_gh_fastai1806_huge_l2_sgd", "real_so33969059_softmax_single_output_regression",
                   "real_ok_so48385830_sigmoid_net_small_lr"]


@pytest.mark.slow
def test_held_out_cases_run_and_score_by_split(cli, tmp_path):
    """Three held-out cases (two faulty, one healthy) through `liandan doctor bench --split heldout`
    over two seeds: every result is held-out and scored in that half only; and the faulty ones show
    their fault against their fixes (bench/doctor_case_check.py), whatever the doctor finds."""
    import sys
    from pathlib import Path

    cases = load_cases(HELD_OUT_SAMPLE)
    assert all(c.split == "heldout" for c in cases)
    code, out, _ = cli("doctor", "bench", "--cases", ",".join(HELD_OUT_SAMPLE), "--split", "heldout", "--no-repair",
                       "--seeds", "0,1", "--json")
    assert code == 0
    doc = json.loads(out)
    assert set(doc["split_scores"]) == {"heldout"} and doc["gap"] is None
    for d in doc["seeds"]:
        assert {r["split"] for r in d["results"]} == {"heldout"} and d["cases"] == 3
        assert d["splits"]["heldout"]["cases"] == 3 and d["splits"]["heldout"]["recall"] == d["recall"]
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import doctor_case_check

    for c in cases:
        if not c.healthy:
            r = doctor_case_check.check((c, tmp_path, 0))
            assert r["shows"], r


def test_case_check_compares_a_language_models_loss_lower_is_better():
    """The judge scores a language model by its validation loss (``higher: False``): the checker
    must count a fix that lowers it as showing the fault, not as a negative gain."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import doctor_case_check as dcc

    case = next(c for c in REAL if not c.healthy and c.recipe["model"]["name"] == "gpt")

    def run(loss: float) -> dict:
        return {"val": {"name": "loss", "metric": loss, "higher": False}, "val_loss": loss, "status": "completed",
                "bad_steps": 0, "train": None, "vocab": 20, "classes": None}

    assert dcc.verdict(case, run(3.97), run(1.25))[0]
    assert not dcc.verdict(case, run(1.25), run(3.97))[0]


def test_case_check_a_nan_shows_a_fault_only_when_the_fix_cures_it():
    """A faulty run gone NaN shows its case's fault only if the fixed run is finite: a fix that
    diverges too did not cure what the NaN shows. A planted fault with no fix shows by its NaN."""
    import sys
    from dataclasses import replace
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import doctor_case_check as dcc

    case = next(c for c in REAL if not c.healthy and "nonfinite_loss" in c.allow + c.expect and c.fix)

    def run(acc: float | None, status: str = "completed", bad: int = 0) -> dict:
        return {"val": {"name": "accuracy", "metric": acc, "higher": True}, "val_loss": 0.3, "status": status,
                "bad_steps": bad, "train": None, "vocab": None, "classes": 3}

    nan = run(None, "diverged", 7)
    assert dcc.verdict(case, nan, run(0.90))[0]
    assert dcc.verdict(case, nan, run(0.40))[0]  # cured, though it learns little: the NaN was the fault
    assert not dcc.verdict(case, nan, run(None, "diverged", 3))[0]  # the fix diverges too
    assert not dcc.verdict(case, nan, run(0.90, "completed", 2))[0]  # finite at the end, but skipped steps
    assert dcc.verdict(replace(case, fix=None), nan, nan)[0]  # no fix to compare
