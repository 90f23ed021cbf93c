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
