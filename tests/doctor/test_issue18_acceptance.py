"""Issue 18's measurements as acceptance tests: each run the issue describes is named by the
doctor; lr-find's suggestion draws no rate finding; ``--fix`` repairs a rate 1000× too high."""

from __future__ import annotations

import json

import pytest

import liandan
from liandan.runs import read_json

BASE = {"train.tensorboard": False, "train.threads": 1, "report": False}

# (recipe, the code the doctor must report first, codes that may come with it)
CASES = {
    # RMSprop at 0.3: training accuracy 0.99, validation loss in the hundreds — over-confident logits
    "rmsprop_blowup": ({"name": "i18-blowup", "data": {"source": "breast_cancer"},
                        "model": {"name": "mlp", "hidden": [64, 64]}, "optim": {"name": "rmsprop", "lr": 0.3},
                        "train": {"epochs": 20}}, "loss_scale_blowup", {"lr_too_high", "overfitting"}),
    # dropout 0.95 in a [32] MLP: train ≈ val accuracy, training loss near ln 10
    "dropout_095": ({"name": "i18-dropout", "data": {"source": "digits"},
                     "model": {"name": "mlp", "hidden": [32], "dropout": 0.95}, "train": {"epochs": 20}},
                    "over_regularization", set()),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_issue_cases_are_named(name, tmp_path):
    recipe, code, allowed = CASES[name]
    run = liandan.train(recipe, overrides=BASE, out=tmp_path / name, quiet=True)
    doc = read_json(run.dir / "doctor.json")
    found = [f["code"] for f in doc["findings"]]
    assert found and found[0] == code, found  # the primary cause ranks first
    assert set(found) <= {code} | allowed, found


@pytest.mark.slow
def test_memorising_wine_is_not_blamed_on_the_rate(tmp_path):
    """36 wine samples into a wide 3-layer MLP (the issue's 2048 units for 300 epochs take minutes
    here; 512 for 150 show the same): reported as lr_too_high only before. The range test calls
    1e-3 usable (2.3× below its top), and the memorised training loss no longer hides the
    overfitting trend. Whether overfitting fires rests on the 0.07 accuracy gap, which 36
    samples of an easy set straddle (0.05-0.11 over seeds): ranking is tested on fixed records in
    test_lr_opinion.py."""
    from liandan.doctor.rules._signal import signal
    from liandan.doctor.view import view_from_run_dir

    recipe = {"name": "i18-overfit", "data": {"source": "wine", "split": [0.2, 0.4, 0.4], "batch_size": 16},
              "model": {"name": "mlp", "hidden": [512, 512, 512]}, "optim": {"name": "adam", "lr": 1.0e-3},
              "train": {"epochs": 150}}
    run = liandan.train(recipe, overrides=BASE, out=tmp_path / "wine", quiet=True)
    found = [f["code"] for f in read_json(run.dir / "doctor.json")["findings"]]
    assert set(found) <= {"overfitting"}, found
    view = view_from_run_dir(run.dir)
    assert signal("lr_too_high", view).margin <= -1  # ≥ 2× from firing
    held = signal("overfitting", view).find("train_loss_fitted")
    assert held is not None and held.margin >= 1  # memorised: ≥ 2× under 5 % of ln 3


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["wine-mlp", "spirals-mlp"])
def test_lr_find_suggestion_draws_no_rate_finding(preset, tmp_path, monkeypatch):
    """lr-find's suggestion, trained through the doctor: no lr_too_high / lr_too_low (the doctor
    reads the curve lr-find cached; bench/doctor_lr_agreement.py runs ten presets)."""
    from liandan.doctor import lr_opinion

    monkeypatch.setenv("LIANDAN_HOME", str(tmp_path / "home"))
    lr_opinion.clear_memo()
    res = liandan.lr_find(preset, overrides={"train.threads": 1})
    run = liandan.train(preset, overrides={**BASE, "optim.lr": res.suggestion, "train.epochs": 10},
                        out=tmp_path / "run", quiet=True)
    found = [f["code"] for f in read_json(run.dir / "doctor.json")["findings"]]
    assert not {"lr_too_high", "lr_too_low"} & set(found), (res.suggestion, found)
    lr_opinion.clear_memo()


@pytest.mark.slow
def test_fix_repairs_a_rate_1000x_too_high(tmp_path, cli):
    """liandan doctor wine-mlp --set optim.lr=5.0 --fix: within the default rounds, overrides under
    which fresh runs (3 seeds) draw no lr_too_high and reach test accuracy ≥ 0.9."""
    sets = [a for k, v in {**BASE, "optim.lr": 5.0}.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    code, out, err = cli("doctor", "wine-mlp", *sets, "--fix", "--json", "--out", str(tmp_path / "repair"),
                         "--memory", str(tmp_path / "memory.db"))
    assert code == 0, err
    rep = json.loads(out)
    # healthy within the default rounds (not necessarily "improved": at lr 5 the 18 validation samples may
    # all come out right by luck, and the judge cannot beat 1.0)
    assert len(rep["rounds"]) - 1 <= 3 and rep["healthy"], rep
    assert rep["overrides"]["optim.lr"] < 0.1
    assert all("metrics" in r for r in rep["rounds"] if "error" not in r and "note" not in r)
    for seed in (0, 1, 2):
        run = liandan.train("wine-mlp", overrides={**BASE, "optim.lr": 5.0, **rep["overrides"], "seed": seed},
                            out=tmp_path / f"fresh-{seed}", quiet=True)
        found = [f["code"] for f in read_json(run.dir / "doctor.json")["findings"]]
        assert "lr_too_high" not in found, (seed, found)
        assert run.summary["final"]["test"]["accuracy"] >= 0.9, (seed, run.summary["final"])
