"""adapter_collapse (issue 18): an adapter run that fails where full fine-tuning of the same recipe
succeeds. The decision is tested on recorded probes (no training), the probe against an independent
full fine-tune of the same recipe, and the relation to lora_rank_too_low on the quick bench's runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from liandan.doctor.rules._signal import signal
from liandan.doctor.view import RunView, view_from_run_dir
from liandan.recipe import load_recipe
from liandan.registry import RULES
from tests.doctor.conftest import run_dir

CODE = "adapter_collapse"
SPIRALS = {"data": {"source": "spirals"}, "model": {"name": "mlp", "hidden": [16]},
           "adapter": {"name": "lora", "r": 4, "alpha": 512, "targets": "all-linear"}, "optim": {"lr": 1e-2}}
ARITH = {"data": {"source": "arith", "operators": "-"}, "model": {"name": "gpt", "size": "tiny"},
         "adapter": {"name": "lora", "r": 16, "alpha": 32, "targets": ["c_attn", "c_proj", "c_fc"]},
         "optim": {"lr": 1e-2}}


def _steps(losses: list[float]) -> dict:
    n = len(losses)
    return {"type": "steps", "epoch": 0, "steps": list(range(1, n + 1)), "loss": losses, "grad_norm": [1.0] * n,
            "applied": [True] * n}


def _epoch(step: int, **splits: dict) -> dict:
    return {"type": "epoch", "epoch": 0, "step": step, **splits}


def _full(**kw) -> dict:
    rec = {"type": "full_probe", "steps": 40, "run_loss": 1.1, "run_val_loss": 1.1, "probe_lr": 1e-2,
           "probe_loss": 0.2, "probe_val_loss": 0.2, "probe_quality": None, "probe_exact_match": float("nan"),
           "tries": [{}]}
    return {**rec, **kw}


def _spirals_view(*probes: dict, acc: float = 0.34) -> RunView:
    recs = [_steps([1.1] * 40), _epoch(40, train={"loss": 1.1, "accuracy": acc}, val={"loss": 1.1, "accuracy": acc}),
            *probes]
    return RunView(load_recipe(SPIRALS), "classify", 3, (2,), recs)


def test_silent_without_an_adapter_or_when_the_adapter_learns_no_probe_trained():
    plain = RunView(load_recipe({k: v for k, v in SPIRALS.items() if k != "adapter"}), "classify", 3, (2,),
                    [_steps([1.1] * 40), _epoch(40, val={"loss": 1.1, "accuracy": 0.34})])
    assert not signal(CODE, plain).fires and len(plain.records) == 2  # nothing trained
    good = _spirals_view(acc=0.97)
    s = signal(CODE, good)
    assert not s.fires and s.margin < -1 and len(good.records) == 2  # the gate: no probe, no retraining


def test_fires_when_the_recorded_full_fine_tune_clears_the_bar_and_a_larger_rank_did_not():
    rank_failed = {"type": "rank_probe", "rank": 4, "probe_rank": 64, "steps": 40, "run_loss": 1.1,
                   "probe_loss": 1.1, "probe_quality": 0.0}
    view = _spirals_view(rank_failed, _full(probe_quality=0.95))
    s = signal(CODE, view)
    # the margin is the closest check: the full fine-tune's 0.95 against 0.6 in odds (the run's quality 0.01 is farther)
    assert s.fires and s.margin == pytest.approx(math.log2((0.95 / 0.05) / (0.6 / 0.4)))
    f = RULES.get(CODE).fn(view)
    assert f.evidence["probe_quality"] == 0.95 and f.evidence["r"] == 4 and "α/r = 128" in " ".join(f.causes)
    patches = [x.patch for x in f.fixes]
    assert patches[0] == {"adapter.alpha": 8}  # α/r = 128: back to the α = 2r convention first
    assert {"optim.lr": 0.005, "schedule.warmup_steps": 40} in patches  # halve, warm up one epoch (40 steps)
    assert not any("adapter.r" in p for p in patches)  # rank ×16 was tried and did not fit
    assert patches[-1] == {"adapter": None, "optim.lr": 0.01}  # full fine-tuning at the probe's rate
    for p in patches:
        load_recipe(view.recipe, p)  # every patch is a valid override
    # the same run whose full fine-tune also fails: not the adapter's fault (underfitting's to say)
    assert not signal(CODE, _spirals_view(rank_failed, _full(probe_quality=0.3))).fires


def test_a_larger_rank_that_fits_is_the_finding_and_no_full_fine_tune_is_trained():
    fits = {"type": "rank_probe", "rank": 4, "probe_rank": 64, "steps": 40, "run_loss": 1.1, "probe_loss": 0.1,
            "probe_quality": 0.9}
    view = _spirals_view(fits)
    s = signal(CODE, view)
    assert not s.fires and s.find("larger_rank_does_not_fit").margin < -1
    assert signal("lora_rank_too_low", view).fires
    assert not any(r["type"] == "full_probe" for r in view.records)  # the rank explains it: nothing retrained


def _arith_view(losses: list[float], epoch: dict, *probes: dict) -> RunView:
    return RunView(load_recipe(ARITH), "lm", 0, (12,), [_steps(losses), _epoch(len(losses), **epoch), *probes])


def test_a_language_model_is_judged_by_exact_match_else_by_its_loss():
    from liandan.doctor.rules.adapter_collapse import exact_match, scale

    falling = [2.0] * 10 + [0.5] * 30  # the loss fell 75 %: lora_rank_too_low's loss gate stays shut, no rank probe
    ep = {"train": {"loss": 0.45, "exact_match": 0.5}, "val": {"loss": 0.47, "exact_match": 0.44}}
    view = _arith_view(falling, ep, _full(probe_exact_match=0.89, run_val_loss=0.47, probe_val_loss=0.1))
    assert scale(view) == "exact_match" and exact_match(view.epochs) == 0.44  # validation first
    s = signal(CODE, view)
    # the run's 0.44 misses the bar by less than the probe's 0.89 clears it: the gate sets the margin
    assert s.fires and s.margin == pytest.approx(math.log2((0.6 / 0.4) / (0.44 / 0.56)))
    assert "exact match 0.440 against 0.890" in RULES.get(CODE).fn(view).causes[0]
    assert not signal(CODE, _arith_view(falling, ep, _full(probe_exact_match=0.5))).fires
    ok = {"val": {"loss": 0.05, "exact_match": 0.95}}
    assert not signal(CODE, _arith_view(falling, ok)).fires  # learns: nothing to probe
    # no exact match logged: the loss gate (fell < 20 %) and a full fine-tune at less than half the loss
    flat = [2.0] * 40
    rank_failed = {"type": "rank_probe", "rank": 16, "probe_rank": 256, "steps": 40, "run_loss": 2.0,
                   "probe_loss": 1.9, "probe_quality": None}
    no_em = {"val": {"loss": 2.0}}
    view = _arith_view(flat, no_em, rank_failed, _full(run_val_loss=2.0, probe_val_loss=0.5))
    assert scale(view) == "loss"
    s = signal(CODE, view)
    assert s.fires and s.find("val_loss_over_full_fine_tune").value == pytest.approx(4.0)
    assert not signal(CODE, _arith_view(flat, no_em, rank_failed, _full(run_val_loss=2.0, probe_val_loss=1.5))).fires



def test_the_probe_retries_at_a_tenth_of_the_rate_only_when_a_high_rate_failed(monkeypatch):
    from liandan.doctor.rules import adapter_collapse as ac

    def fake(outcome):  # lr -> (quality, end loss) of the full fine-tune the probe would train
        def _try(view, lr):
            q, loss = outcome[min(outcome, key=lambda k: abs(k - lr))]
            return {"lr": lr, "steps": 40, "start_loss": 1.1, "loss": loss, "val_loss": loss, "quality": q,
                    "exact_match": float("nan"), "metrics": {}}
        return _try

    hot = _spirals_view()  # lr 1e-2, above Adam's typical 1e-3
    monkeypatch.setattr(ac, "_try", fake({1e-2: (0.0, 1.0), 1e-3: (0.95, 0.1)}))  # collapses, then fits at lr/10
    rec = ac._train_probe(hot)
    assert [t["lr"] for t in rec["tries"]] == [1e-2, 1e-3] and rec["probe_lr"] == 1e-3 and rec["probe_quality"] == 0.95
    monkeypatch.setattr(ac, "_try", fake({1e-2: (0.9, 0.2)}))  # fits at the run's rate: one probe
    assert [t["lr"] for t in ac._train_probe(_spirals_view())["tries"]] == [1e-2]
    cold = RunView(load_recipe(SPIRALS, {"optim.lr": 1e-5}), "classify", 3, (2,), hot.records[:2])
    monkeypatch.setattr(ac, "_try", fake({1e-5: (0.0, 1.05)}))  # fails at a low rate: a tenth would fail too
    assert [t["lr"] for t in ac._train_probe(cold)["tries"]] == [1e-5]
    monkeypatch.setattr(ac, "_try", fake({1e-5: (0.0, float("nan")), 1e-6: (0.1, 1.0)}))  # diverged: retried
    rec = ac._train_probe(cold)
    assert [t["lr"] for t in rec["tries"]] == pytest.approx([1e-5, 1e-6])
    assert rec["probe_lr"] == pytest.approx(1e-6)  # the one that did not diverge


def _records(d: Path) -> list[dict]:
    return [json.loads(line) for line in (d / "doctor_probes.jsonl").read_text().splitlines()]


def test_the_probe_is_the_recipe_without_its_adapter(quick_bench, tmp_path):
    from liandan.runs import read_metrics
    from liandan.training.api import train

    d = run_dir(quick_bench, "lora_alpha_heavy_spirals")
    rec = next(r for r in _records(d) if r["type"] == "full_probe")
    view = view_from_run_dir(d)
    assert rec["steps"] == view.steps[-1] and rec["probe_lr"] == view.lr  # the run's steps, at its rate
    assert view.quality() < 0.6 <= rec["probe_quality"]
    # an independent full fine-tune of the same recipe from the same base lands on the probe's numbers
    run = train(view.recipe.to_dict(), overrides={"adapter": None, "train.max_steps": rec["steps"],
                                                  "doctor.enabled": False}, out=tmp_path / "full", quiet=True)
    last = [r for r in read_metrics(run.dir / "metrics.csv") if r["split"] == "val"][-1]
    assert last["loss"] == pytest.approx(rec["probe_val_loss"], rel=1e-4)
    chance = 1 / max(view.num_classes, 2)
    assert rec["probe_quality"] == pytest.approx((last["accuracy"] - chance) / (1 - chance), abs=1e-4)
    found = [f["code"] for f in json.loads((d / "doctor.json").read_text())["findings"]]
    assert CODE in found and "underfitting" not in found and "lora_rank_too_low" not in found
    assert next(r for r in _records(d) if r["type"] == "rank_probe")["probe_quality"] < 0.6  # rank ×16: no help


def test_silent_where_a_larger_rank_fits(quick_bench):
    d = run_dir(quick_bench, "lora_rank1_spirals_two_turns")
    assert not any(r["type"] == "full_probe" for r in _records(d))  # the rank explains it: no full fine-tune
    assert not signal(CODE, view_from_run_dir(d)).fires


@pytest.mark.slow
def test_a_language_model_probe_reads_exact_match_and_matches_an_independent_full_run(tmp_path):
    from liandan.runs import read_metrics
    from liandan.training.api import train

    rc = {"name": "lm-lora", "data": {"source": "arith", "n": 1200, "operators": "-", "batch_size": 32},
          "model": {"name": "gpt", "size": "tiny", "layers": 1, "dim": 32, "heads": 2},
          "adapter": {"name": "lora", "r": 2, "alpha": 4, "targets": "all-linear"},
          "optim": {"name": "adamw", "lr": 1e-3}, "train": {"epochs": 2}}
    fast = {"train.tensorboard": False, "train.threads": 1, "report": False}
    run = train(rc, overrides=fast, out=tmp_path / "lora", quiet=True)
    recs = _records(run.dir)
    view = view_from_run_dir(run.dir)
    from liandan.doctor.rules.adapter_collapse import exact_match

    assert exact_match(view.epochs) < 0.6  # two epochs of a rank-2 adapter on a fresh model: the gate opens
    rec = next(r for r in recs if r["type"] == "full_probe")
    assert rec["steps"] == view.steps[-1] and len(rec["tries"]) == 1 and rec["probe_lr"] == 1e-3
    full = train({k: v for k, v in rc.items() if k != "adapter"}, overrides={**fast, "doctor.enabled": False,
                 "train.max_steps": rec["steps"]}, out=tmp_path / "full", quiet=True)
    last = [r for r in read_metrics(full.dir / "metrics.csv") if r["split"] == "val"][-1]
    assert rec["probe_exact_match"] == pytest.approx(last["exact_match"], abs=1e-4)
    assert rec["probe_val_loss"] == pytest.approx(last["loss"], rel=1e-4)
    found = [f["code"] for f in json.loads((run.dir / "doctor.json").read_text())["findings"]]
    assert (CODE in found) == (rec["probe_exact_match"] > 0.6)  # the verdict is the recorded comparison
