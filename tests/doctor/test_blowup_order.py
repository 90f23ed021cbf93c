"""What happened first: dead units before or after a blow-up, a rate judged when the run overflowed
before its steps could be measured, and a training accuracy that falls under a heavy penalty."""

from __future__ import annotations

import math

from liandan.doctor.engine import run_rules
from liandan.doctor.rules._signal import signal
from liandan.doctor.rules.exploding_gradients import units_outlived_blowup
from liandan.doctor.view import RunView
from liandan.recipe import load_recipe

NAN = float("nan")


def _steps(loss: list[float], gn: list[float]) -> dict:
    n = list(range(1, len(loss) + 1))
    return {"type": "steps", "steps": n, "loss": loss, "grad_norm": gn, "applied": [math.isfinite(x) for x in loss]}


def _probe(step: int, dead: float, update: float = 0.05) -> dict:
    return {"type": "probe", "step": step, "layers": {"0": {"update": update, "grad": 1.0}},
            "acts": {"relu1": {"dead": dead}}}


def _epoch(i: int, acc: float, loss: float = 2.3, train_acc: float | None = None) -> dict:
    return {"type": "epoch", "epoch": i, "step": 20 * (i + 1), "train": {"loss": loss, "accuracy": train_acc or acc},
            "val": {"loss": loss, "accuracy": acc}}


def _view(recipe: dict, recs: list[dict]) -> RunView:
    return RunView(load_recipe(recipe), "classify", 10, (64,), recs)


MLP = {"data": {"source": "digits"}, "model": {"name": "mlp"}, "optim": {"name": "sgd", "lr": 2.0}}


def test_units_dead_before_a_nan_are_reported_beside_it(monkeypatch):
    """SGD at 2.0 on digits (ybigta#11): 78 % of a layer dead at step 16, NaN from step 32 — the units
    died first, so the NaN does not hide them. Dead only at the probe after the NaN: its consequence."""
    monkeypatch.setenv("LIANDAN_DOCTOR_RANGE_TEST", "0")  # the rules judge by their own checks: nothing trains
    loss = [2.3] * 31 + [NAN] * 9
    gn = [1.0] * 30 + [1e9] + [NAN] * 9
    for dead_at_16, reported in ((0.78, True), (0.2, False)):
        recs = [_probe(1, 0.07), _probe(16, dead_at_16), _probe(31, 0.98), _probe(40, 0.98),
                _steps(loss, gn), _epoch(0, 0.1), _epoch(1, 0.1)]
        v = _view(MLP, recs)
        assert signal("dead_relu", v).fires and signal("nonfinite_loss", v).fires
        assert units_outlived_blowup(v) == ({"dead_relu"} if reported else set())
        codes = {f.code for f in run_rules(v)}
        assert ("dead_relu" in codes) is reported and "nonfinite_loss" in codes


def test_units_that_outlive_a_blowup_the_run_survived_are_reported():
    """RMSprop at 0.05 on LeNet (keras#7057): the gradient norm leaps 80,000× in the first steps and
    falls back; every loss stays finite, 93 % of the units stay dead and the run stays at chance. The
    same dead units under gradients that never fall back stay hidden behind the explosion."""
    for calm, reported in ((1.0, True), (5e4, False)):
        gn = [0.17, 1.3e4] + [calm] * 38 + [5e4 if calm > 1 else 1.0] * 20
        recs = [_probe(1, 0.37), _probe(8, 0.89), _probe(30, 0.93), _probe(60, 0.94),
                _steps([2.3] * 60, gn), _epoch(0, 0.12), _epoch(1, 0.14)]
        v = _view({**MLP, "optim": {"name": "rmsprop", "lr": 0.05}}, recs)
        assert signal("exploding_gradients", v).fires
        assert units_outlived_blowup(v) == ({"dead_relu"} if reported else set())


def test_a_run_that_overflows_before_its_steps_are_measured_is_judged_by_the_range_test():
    """Nesterov at 0.5 (caffe#6162) goes NaN at step 6, before the second probe: no update ratio. The
    range test places 0.5 80× above its usable range: lr_too_high. Weights 2.4× He-sized blow up at any
    rate: the init's story, not the rate's."""
    loss = [1.5, 2.0, 9.0, 80.0, 1e4] + [NAN] * 10
    gn = [6.0, 50.0, 800.0, 1.3e4, 1e8] + [NAN] * 10
    rng = {"type": "lr_find", "source": "test", "suggestion": 0.003, "low": 3e-4, "high": 0.0062,
           "diverged_at": 0.05}
    for model, fires in (({"name": "lenet5"}, True),
                         ({"name": "mlp", "hidden": [128] * 6, "init": "normal", "init_std": 0.3}, False)):
        recs = [_probe(1, 0.4, update=1.27), {"type": "probe", "step": 13, "layers": {"0": {"update": NAN}}},
                _steps(loss, gn), rng, _epoch(0, NAN)]
        v = _view({"data": {"source": "digits"}, "model": model, "optim": {"name": "nesterov", "lr": 0.5}}, recs)
        v.records.append({"type": "meta", "layers": [{"name": str(i), "shape": [128, 128]} for i in range(6)],
                          "activations": [], "norms": 0, "dropout": []})
        s = signal("lr_too_high", v)
        assert s.fires is fires
        assert (s.find("updates_overflowed") is not None) is fires


def test_a_penalty_that_takes_the_fit_away_is_not_mistaken_for_a_generalisation_gap():
    """L2 0.5 on a digits MLP (keras#4359): training accuracy 0.40 → 0.72 → 0.70 → 0.38 (the epoch's
    running average), validation 0.24 at the end — a 0.14 gap, yet the fit is being lost on the training
    set too. A run whose training accuracy holds at 0.38 with validation 0.24 has a real gap."""
    rc = {"data": {"source": "digits"}, "model": {"name": "mlp", "hidden": [256]}, "loss": {"l2": 0.5},
          "optim": {"name": "adam", "lr": 1e-3}}
    for train_accs, agrees in (((0.40, 0.72, 0.70, 0.38), True), ((0.36, 0.37, 0.38, 0.38), False)):
        eps = [_epoch(i, 0.5, loss=2.6, train_acc=a) for i, a in enumerate(train_accs)]
        eps[-1]["val"]["accuracy"] = 0.24
        s = signal("over_regularization", _view(rc, eps))
        assert s.find("not_overfitting").fires is agrees
        assert s.find("accuracy_gap").value == 0.38 - 0.24


def test_a_gap_counts_against_over_regularization_unless_the_probe_gains(monkeypatch):
    """Weight decay 0.2 on a BatchNorm ResNet: training accuracy 0.62, validation 0.28 — a gap, so the
    cheap checks alone do not name the regulariser; the probe without it reaching 0.96 does. A probe
    that only lowers the training loss (what removing a regulariser does to a run that overfits) does not."""
    rc = {"data": {"source": "digits"}, "model": {"name": "mlp"}, "optim": {"name": "momentum", "lr": 0.05,
                                                                               "weight_decay": 0.2}}
    for probe_acc, fires in ((0.96, True), (0.30, False)):
        eps = [_epoch(i, 0.3, loss=1.2, train_acc=a) for i, a in enumerate((0.51, 0.59, 0.62))]
        eps[-1]["val"]["accuracy"] = 0.28
        probe = {"type": "reg_probe", "patch": {"optim.weight_decay": 0.0}, "steps": 60,
                 "probe_quality": (probe_acc - 0.1) / 0.9, "probe_train_loss": 0.05}
        v = _view(rc, [*eps, probe])
        v.phase = "end"
        s = signal("over_regularization", v)
        assert s.fires is fires and s.name == "gap_but_better_without"


def test_units_dead_in_a_lull_between_blowups_are_reported_beside_them():
    """Momentum SGD at 0.4 on a wine MLP (Google's crash course on dead ReLUs): the gradient norm leaps
    at step 20, falls back to its start by step 30 while every unit of a layer is dead (the loss sits at
    ln 3, the net outputs a constant), then the run overflows to NaN at step 45. Dead units in the calm
    are damage of their own: reported beside the blow-up. Units dead only while the gradients are still
    blown up are its turmoil, and stay hidden — as are units dead at 7× the starting loss (momentum at 10
    on digits: dead units starve the gradient, so it looks calm while the loss is still blown up)."""
    for calm, lull_loss, reported in ((0.5, 1.1, True), (4e3, 1.1, False), (0.5, 8.0, False)):
        loss = [1.1] * 19 + [60.0] * 10 + [lull_loss] * 15 + [NAN] * 20
        gn = [0.4] * 19 + [4e3] * 10 + [calm] * 15 + [NAN] * 20
        recs = [_probe(1, 0.1), _probe(10, 0.25), _probe(28, 0.81), _probe(37, 1.0), _probe(55, 0.98),
                _probe(64, 0.9), _steps(loss, gn), _epoch(0, 0.33), _epoch(1, 0.33)]
        v = _view({**MLP, "optim": {"name": "momentum", "lr": 0.4}}, recs)
        assert signal("dead_relu", v).fires and signal("exploding_gradients", v).fires
        assert units_outlived_blowup(v) == ({"dead_relu"} if reported else set())


def test_a_mostly_dead_layer_is_a_finding_while_the_classifier_falls_short_of_its_ceiling(monkeypatch):
    """A digits MLP under Adam at 0.1 (Data Science SE 5706): 92 % of a layer dead, accuracy 0.68 — above
    the generic learns-poorly bar (quality 0.6), short of the ceiling the rate probe uses (0.85).
    The same dead share in a net that reaches 0.95 is not a finding."""
    monkeypatch.setenv("LIANDAN_DOCTOR_RANGE_TEST", "0")
    for acc, fires in ((0.68, True), (0.95, False)):
        recs = [_probe(1, 0.15), _probe(16, 0.92), _probe(91, 0.92), _probe(136, 0.94),
                _steps([2.3] + [0.8] * 135, [0.4] * 136), _epoch(0, acc - 0.05), _epoch(1, acc)]
        v = _view({**MLP, "optim": {"name": "adam", "lr": 0.1}}, recs)
        assert signal("dead_relu", v).fires is fires
        assert ("dead_relu" in {f.code for f in run_rules(v)}) is fires
