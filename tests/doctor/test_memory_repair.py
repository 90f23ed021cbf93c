"""Memory round trip and ranking; the repair loop on one case."""

from __future__ import annotations

from liandan.doctor.findings import Finding, Fix
from liandan.doctor.memory import Memory


def test_memory_round_trip_and_ranking(tmp_path):
    mem = Memory(tmp_path / "m.db")
    sig = {"model": "mlp", "activation": "relu", "data": "digits", "optimizer": "sgd", "task": "auto"}
    f = Finding("lr_too_low", "warning", 5, 0, {"update_ratio": 1e-6}, ["lr"], [])
    mem.record_finding(sig, f)
    a, b = Fix("raise", {"optim.lr": 0.01}), Fix("adam", {"optim.name": "adamw", "optim.lr": 0.001})
    assert mem.rank("lr_too_low", sig, [a, b]) == [a, b]  # no memory: the rule's order
    for _ in range(3):
        mem.record_attempt(sig, "lr_too_low", a, gone=False, improved=False, before=0.1, after=0.1)
        mem.record_attempt(sig, "lr_too_low", b, gone=True, improved=True, before=0.1, after=0.9)
    again = Memory(tmp_path / "m.db")  # persisted
    assert again.rank("lr_too_low", sig, [a, b]) == [b, a]
    rows = again.attempts("lr_too_low")
    assert len(rows) == 6 and rows[1]["patch"] == b.patch and rows[1]["success"] == 1
    assert again.findings("lr_too_low")[0]["evidence"] == {"update_ratio": 1e-6}


def test_memory_location_follows_liandan_home(tmp_path, monkeypatch):
    from liandan.doctor.memory import default_path

    monkeypatch.setenv("LIANDAN_HOME", str(tmp_path))
    assert default_path() == tmp_path / "memory.db"
    assert default_path(str(tmp_path / "x.db")) == tmp_path / "x.db"


def test_repair_fixes_zero_init(tmp_path):
    import liandan
    from liandan.doctor.bench import load_cases

    case = load_cases(["symmetry_zeros_relu_digits"])[0]
    mem = tmp_path / "memory.db"
    rep = liandan.diagnose(case.recipe, fix=True, overrides={"train.tensorboard": False}, out=tmp_path / "r",
                           memory=mem, rounds=2)
    assert rep["rounds"][0]["findings"] == ["symmetry"]
    first = rep["rounds"][1]
    assert first["finding"] == "symmetry"
    assert first["fix"]["patch"]["model.init"] in ("kaiming_normal", "xavier_uniform")
    assert first["accepted"] and rep["healthy"] and rep["improved"] and rep["success"]
    assert rep["final_val"] > rep["rounds"][0]["val"] + 0.5
    assert Memory(mem).attempts("symmetry")[0]["success"] == 1


def _scripted(script: dict, seen: list[str], splits: bool = False):
    """A stand-in for repair's ``_train``: the overrides (as JSON) -> (findings, val accuracy)."""
    import json
    from types import SimpleNamespace

    def fake_train(recipe, overrides, out, callbacks, quiet):
        key = json.dumps(overrides, sort_keys=True)
        seen.append(key)
        found, acc = script[key]
        return SimpleNamespace(dir=out), found, {"name": "accuracy", "metric": acc, "loss": 1 - acc, "n": 100,
                                                 "splits": {"test": {"accuracy": acc}} if splits else {}}

    return fake_train


def test_repair_compounds_fixes(tmp_path, monkeypatch):
    """A fix that helps but leaves its finding is kept and the next round builds on it: a lowered
    rate is lowered again, a schedule change keeps the lowered rate (the trainings are scripted)."""

    from liandan.doctor import repair as rp

    def lr_high(*patches):
        return Finding("lr_too_high", "warning", 3, 0, {"lr": 1}, ["lr"], [Fix(f"fix {i}", p) for i, p in
                                                                           enumerate(patches)])

    script = {  # patch trained -> (findings, val accuracy)
        '{"optim.lr": 0.05}': ([lr_high({"optim.lr": 0.01}, {"schedule.name": "cosine"})], 0.6),  # better, still
        '{"optim.lr": 0.01}': ([lr_high({"optim.lr": 0.001})], 0.55),  # worse: reverted
        '{"optim.lr": 0.05, "schedule.name": "cosine"}': ([], 0.95),  # keeps the lowered rate: cured
    }
    seen: list[str] = []
    monkeypatch.setattr(rp, "_train", _scripted(script, seen, splits=True))
    start = {"name": "accuracy", "metric": 0.3, "loss": 5.0, "n": 100}
    rep = rp.repair("wine-mlp", {"optim.lr": 5.0}, rounds=3, out=tmp_path / "r", memory=Memory(tmp_path / "m.db"),
                    baseline=(tmp_path / "r0", [lr_high({"optim.lr": 0.05})], start))
    assert seen == list(script)
    r1, r2, r3 = rep["rounds"][1:]
    assert r1["accepted"] and not r1["gone"] and r1["improved"]  # kept although the finding stays
    assert not r2["accepted"]  # lowered again, but worse
    assert r3["accepted"] and r3["metrics"] == {"test": {"accuracy": 0.95}}
    assert rep["overrides"] == {"optim.lr": 0.05, "schedule.name": "cosine"} and rep["success"]


def test_repair_keeps_looking_for_a_better_metric_once_healthy(tmp_path, monkeypatch):
    """Early stopping hides overfitting without raising validation accuracy: healthy, not better.
    The next rounds try the finding's other fixes and keep only one that improves and stays
    healthy (the trainings are scripted)."""

    from liandan.doctor import repair as rp

    es, wd, drop = {"train.early_stopping": {"patience": 3}}, {"optim.weight_decay": 0.05}, {"model.dropout": 0.3}
    overfit = Finding("overfitting", "warning", 3, 0, {}, ["gap"], [Fix("stop early", es), Fix("decay", wd),
                                                                     Fix("dropout", drop)])
    script = {  # patch trained -> (findings, val accuracy)
        '{"train.early_stopping": {"patience": 3}}': ([], 0.80),  # cured, not better
        '{"optim.weight_decay": 0.05, "train.early_stopping": {"patience": 3}}': ([], 0.80),  # no better: reverted
        '{"model.dropout": 0.3, "train.early_stopping": {"patience": 3}}': ([], 0.90),  # better and healthy: kept
    }
    seen: list[str] = []
    monkeypatch.setattr(rp, "_train", _scripted(script, seen))
    start = {"name": "accuracy", "metric": 0.80, "loss": 0.2, "n": 100}
    rep = rp.repair("wine-mlp", {}, rounds=3, out=tmp_path / "r", memory=Memory(tmp_path / "m.db"),
                    baseline=(tmp_path / "r0", [overfit], start))
    assert seen == list(script), rep["rounds"]
    r1, r2, r3 = rep["rounds"][1:]
    assert r1["accepted"] and not r1["improved"] and not r2["accepted"] and r3["accepted"] and r3["improved"]
    assert rep["overrides"] == {**es, **drop} and rep["healthy"] and rep["success"]


def test_a_reverted_fix_is_tried_again_once_another_is_kept(tmp_path, monkeypatch):
    """Two faults: a chat template judged while prompt tokens are still in the loss looks no better
    and is reverted; once the prompt fix is kept, the template is tried again on top of it and cures
    the run (the trainings are scripted)."""

    from liandan.doctor import repair as rp

    tpl, resp = {"data.chat_template": True}, {"data.train_on_prompt": False}
    no_tpl = Finding("chat_template_missing", "warning", 3, 0, {}, ["raw"], [Fix("template", tpl)])
    prompt = Finding("sft_prompt_loss", "info", 3, 0, {}, ["prompt"], [Fix("responses only", resp)])
    script = {  # patch trained -> (findings, val accuracy)
        '{"data.chat_template": true}': ([prompt], 0.40),  # no better while the prompts carry the loss
        '{"data.train_on_prompt": false}': ([no_tpl], 0.60),  # better, the template still missing: kept
        '{"data.chat_template": true, "data.train_on_prompt": false}': ([], 0.70),  # retried on top: cured
    }
    seen: list[str] = []
    monkeypatch.setattr(rp, "_train", _scripted(script, seen))
    start = {"name": "accuracy", "metric": 0.42, "loss": 2.0, "n": 100}
    rep = rp.repair("wine-mlp", {}, rounds=3, out=tmp_path / "r", memory=Memory(tmp_path / "m.db"),
                    baseline=(tmp_path / "r0", [no_tpl, prompt], start))
    assert seen == list(script), rep["rounds"]
    assert [r["accepted"] for r in rep["rounds"][1:]] == [False, True, True]
    assert rep["overrides"] == {**tpl, **resp} and rep["success"]
