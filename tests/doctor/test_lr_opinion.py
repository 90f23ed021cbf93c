"""One opinion on the learning rate (the rate rules judged against the LR range test), the plot's
clipped y-axis, the two new rules on synthetic epoch records, and the step-based probe schedule."""

from __future__ import annotations

import json
import math

import pytest

from liandan.doctor.rules._signal import signal
from liandan.doctor.view import RunView
from liandan.recipe import load_recipe
from liandan.training.lr_finder import finder_key, usable_range, y_range
from tests.doctor.conftest import run_dir


def _with_range(view: RunView, low: float, high: float, suggestion: float) -> RunView:
    recs = [r for r in view.records if r.get("type") != "lr_find"]
    recs.append({"type": "lr_find", "source": "test", "suggestion": suggestion, "low": low, "high": high})
    return RunView(view.recipe, view.task, view.num_classes, view.input_shape, recs, status=view.status,
                   sizes=view.sizes)


def test_usable_range_and_finder_key():
    assert usable_range(0.01, 1.0) == pytest.approx((0.001, 0.1))  # up to a tenth of the loss minimum's rate
    assert usable_range(0.01, 0.05) == pytest.approx((0.001, 0.01))  # never below the suggestion
    rc = load_recipe("wine-mlp")
    same = load_recipe(rc, {"optim.lr": 5.0, "train.epochs": 3, "schedule.name": "cosine", "train.threads": 1})
    assert finder_key(rc) == finder_key(same)  # the curve does not depend on the rate, schedule or length
    assert finder_key(rc) != finder_key(load_recipe(rc, {"seed": 1}))
    assert finder_key(rc) != finder_key(load_recipe(rc, {"model.hidden": [64]}))
    assert finder_key(rc) != finder_key(rc, num_steps=50)


def test_plot_y_range_clips_a_spike():
    losses = [2.3] * 5 + [2.0, 1.4, 0.9, 0.6, 80.0]
    smoothed = [2.3] * 5 + [2.2, 2.0, 1.7, 1.4, 4.0]
    lo, hi = y_range(losses, smoothed)
    assert lo < 0.6 and 2.3 < hi <= 3 * 2.3 + 1  # from the lowest loss to a few × the start, not to 80
    assert y_range([1.0] * 10, [1.0] * 10)[1] > 1.0  # a flat curve still gets a band


def test_lr_too_high_defers_to_the_range_test(quick_bench):
    from liandan.doctor.view import view_from_run_dir

    view = view_from_run_dir(run_dir(quick_bench, "lr_high_wine_momentum"))
    assert signal("lr_too_high", view).fires
    lr = view.lr
    inside = signal("lr_too_high", _with_range(view, lr / 40, lr * 4, lr * 2))  # the test calls the rate usable
    assert not inside.fires
    check = inside.find("lr_over_range_test")
    assert check is not None and check.margin == pytest.approx(-2.0)  # lr is 4× below the range's top
    above = signal("lr_too_high", _with_range(view, lr / 400, lr / 4, lr / 40))
    assert above.fires and above.find("lr_over_range_test").margin == pytest.approx(2.0)


def test_lr_too_low_defers_to_the_range_test(quick_bench):
    from liandan.doctor.view import view_from_run_dir

    view = view_from_run_dir(run_dir(quick_bench, "lr_low_sgd_digits"))
    assert signal("lr_too_low", view).fires
    lr = view.lr
    assert not signal("lr_too_low", _with_range(view, lr / 2, lr * 100, lr * 10)).fires
    assert signal("lr_too_low", _with_range(view, lr * 8, lr * 800, lr * 80)).fires


def test_lowered_rates_step_into_the_usable_range(quick_bench):
    from liandan.doctor.rules._common import lower_lr, raise_lr
    from liandan.doctor.view import view_from_run_dir

    v = view_from_run_dir(run_dir(quick_bench, "lr_high_wine_momentum"))
    at = lambda lr, opt="adam": _with_range(  # noqa: E731
        RunView(load_recipe(v.recipe, {"optim.lr": lr, "optim.name": opt}), v.task, v.num_classes, v.input_shape,
                v.records), 1e-3, 0.1, 0.03)  # usable 1e-3 .. 0.1: its log-middle is 0.01
    assert lower_lr(at(5.0)) == pytest.approx(0.01)  # above the range: straight into its middle
    assert lower_lr(at(0.05)) == pytest.approx(1e-3)  # inside: ÷100 (far above typical) stops at the range's floor
    assert lower_lr(at(0.005)) == pytest.approx(1e-3)  # inside: ÷10 again, stopped at the floor
    assert raise_lr(at(1e-6)) == pytest.approx(0.01)  # below the range: its middle
    assert raise_lr(at(3e-3)) == pytest.approx(0.03)  # inside: ×10
    assert raise_lr(at(0.05)) == pytest.approx(0.1)  # inside: ×10 stops at the range's top


def test_doctor_reads_the_curve_lr_find_cached(tmp_path, monkeypatch):
    import liandan
    from liandan.doctor import lr_opinion

    monkeypatch.setenv("LIANDAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LIANDAN_DOCTOR_RANGE_TEST", "0")  # the doctor may only read, not run its own
    lr_opinion.clear_memo()
    recipe = {"data": {"source": "iris", "batch_size": 16}, "model": {"name": "mlp", "hidden": [16]},
              "train": {"tensorboard": False, "threads": 1}}
    rc = load_recipe(recipe)
    view = RunView(rc, "classify", 3, (4,), [])
    assert lr_opinion.usable_range(view) is None  # no curve yet, and not allowed to draw one
    res = liandan.lr_find(rc)
    lr_opinion.clear_memo()
    view = RunView(load_recipe(rc, {"optim.lr": 0.5}), "classify", 3, (4,), [])  # another rate, same curve
    rng = lr_opinion.usable_range(view)
    assert rng["source"] == "cache" and rng["suggestion"] == res.suggestion
    assert (rng["low"], rng["high"]) == pytest.approx(res.usable)
    assert view.records[-1] is rng  # kept in the records: the probe log carries it to a post hoc diagnosis
    lr_opinion.clear_memo()


def _epochs(train: list[tuple[float, float]], val: list[tuple[float, float]]) -> list[dict]:
    pairs = enumerate(zip(train, val, strict=True))
    return [{"type": "epoch", "epoch": i, "step": 10 * (i + 1), "train": {"loss": tl, "accuracy": ta},
             "val": {"loss": vl, "accuracy": va}} for i, ((tl, ta), (vl, va)) in pairs]


def test_loss_scale_blowup_on_synthetic_epochs():
    rc = load_recipe({"data": {"source": "breast_cancer"}, "model": {"name": "mlp", "hidden": [64, 64]},
                      "optim": {"name": "rmsprop", "lr": 0.3}})
    blown = _epochs([(1.7, 0.99), (7.6, 0.99), (1.7, 0.99)], [(300.0, 0.95), (1379.0, 0.94), (900.0, 0.95)])
    s = signal("loss_scale_blowup", RunView(rc, "classify", 2, (30,), blown))
    # the median over the last three epochs of val loss / max(train loss, ln 2): 176, 181, 529
    assert s.fires and s.find("val_loss_over_reference").value == pytest.approx(1379.0 / 7.6)
    # an ordinary overfit: val loss 30× a tiny train loss, yet below ln 2 × 10
    overfit = _epochs([(0.01, 1.0)] * 3, [(0.3, 0.9)] * 3)
    assert not signal("loss_scale_blowup", RunView(rc, "classify", 2, (30,), overfit)).fires
    # a broken model (accuracy at chance) is another rule's business
    broken = _epochs([(50.0, 0.5)] * 3, [(900.0, 0.5)] * 3)
    assert not signal("loss_scale_blowup", RunView(rc, "classify", 2, (30,), broken)).fires


def test_over_regularization_on_synthetic_epochs():
    heavy = load_recipe({"data": {"source": "digits"}, "model": {"name": "mlp", "hidden": [32], "dropout": 0.95}})
    held = _epochs([(2.0, 0.7), (1.9, 0.84), (1.83, 0.86)], [(1.5, 0.85), (1.4, 0.86), (1.4, 0.86)])
    # the ablation probe's record (as the live doctor keeps it): without dropout the fit recovers
    cured = {"type": "reg_probe", "patch": {"model.dropout": 0.0}, "steps": 30, "probe_quality": 0.95,
             "probe_train_loss": 0.2}
    s = signal("over_regularization", RunView(heavy, "classify", 10, (64,), held + [cured]))
    assert s.fires and s.find("dropout").fires
    assert s.find("unregularised_train_loss_over_uniform").value == pytest.approx(0.2 / math.log(10))
    # the probe refutes the cause: without dropout the model is no better (the rate, the data...)
    same = {**cured, "probe_quality": 0.86, "probe_train_loss": 1.8}
    assert not signal("over_regularization", RunView(heavy, "classify", 10, (64,), held + [same])).fires
    light = load_recipe(heavy, {"model.dropout": 0.1})
    assert not signal("over_regularization", RunView(light, "classify", 10, (64,), held)).fires  # no cause in sight
    l2 = load_recipe(light, {"loss.l2": 1.0})
    assert signal("over_regularization", RunView(l2, "classify", 10, (64,), held + [cured])).fires
    fitted = _epochs([(0.05, 1.0)] * 3, [(0.4, 0.9)] * 3)
    assert not signal("over_regularization", RunView(heavy, "classify", 10, (64,), fitted)).fires


@pytest.mark.parametrize(("optim", "heavy"), [("adam", True), ("rmsprop", True), ("momentum", False),
                                               ("adamw", False)])
def test_weight_decay_coupled_to_an_adaptive_optimizer_is_heavy_sooner(optim: str, heavy: bool):
    """Weight decay 0.05 coupled to Adam holds a LeNet at chance (loss ln 10, VCN#11): Adam rescales
    the decay term like the gradient, so the pull to zero is ~lr a step. Coupled to momentum SGD it is
    wd × lr a step (heavy from 0.1); decoupled, AdamW's 0.05 is an ordinary setting (heavy from 1).
    The recipe's default 0.01 is heavy for none of them."""
    from liandan.doctor.rules.over_regularization import heavy as is_heavy

    rc = load_recipe({"data": {"source": "shapes"}, "model": {"name": "lenet5"},
                      "optim": {"name": optim, "lr": 2e-3, "weight_decay": 0.05}})
    assert is_heavy(RunView(rc, "classify", 10, (1, 16, 16), [])).fires is heavy
    default = load_recipe(rc, {"optim.weight_decay": 0.01})
    assert not is_heavy(RunView(default, "classify", 10, (1, 16, 16), [])).fires


@pytest.mark.slow
def test_over_regularization_probe_refutes_a_regulariser_that_is_not_the_cause(tmp_path):
    """Dropout 0.5 beside a rate 1000× too small: the cheap checks fire (loss near ln K), but the
    recipe without dropout is held back just as much, so the rate — not the regulariser — is named."""
    from liandan.training.api import train

    rc = {"data": {"source": "digits"}, "model": {"name": "mlp", "hidden": [64], "dropout": 0.5},
          "optim": {"name": "sgd", "lr": 1e-4}, "train": {"epochs": 4, "tensorboard": False, "threads": 1},
          "report": False}
    for seed in (0, 1):
        run = train(rc, overrides={"seed": seed}, out=tmp_path / str(seed), quiet=True)
        codes = [f["code"] for f in json.loads((run.dir / "doctor.json").read_text())["findings"]]
        probe = [json.loads(x) for x in (run.dir / "doctor_probes.jsonl").read_text().splitlines()
                 if '"reg_probe"' in x]
        assert probe and probe[0]["probe_train_loss"] > 0.9 * math.log(10)  # still near a uniform guess
        assert "over_regularization" not in codes and "lr_too_low" in codes


@pytest.mark.slow
def test_confirmed_over_regularization_hides_its_consequences(tmp_path):
    """LeNet under weight decay 0.3 (vlfeat/matconvnet#1051): the decay pins the weights near zero, so
    gradients shrink and ReLUs go quiet too; the probe without the decay recovers, so the regulariser
    is reported alone — not beside vanishing gradients or dead units it caused."""
    from liandan.training.api import train

    rc = {"data": {"source": "digits", "batch_size": 32}, "model": {"name": "lenet5"},
          "optim": {"name": "momentum", "lr": 0.03, "weight_decay": 0.3},
          "train": {"epochs": 4, "tensorboard": False, "threads": 1}, "report": False}
    for seed in (0, 1, 2):
        run = train(rc, overrides={"seed": seed}, out=tmp_path / str(seed), quiet=True)
        codes = {f["code"] for f in json.loads((run.dir / "doctor.json").read_text())["findings"]}
        assert codes == {"over_regularization"}, (seed, codes)


def test_unnormalized_inputs_that_only_cost_accuracy_need_the_probe():
    """Raw breast_cancer features (scales up to ~1000) into an MLP that still learns passably
    (accuracy 0.85, quality 0.7 — above the "learns poorly" bar): standardising in the ablation
    probe reaches 0.97, so the scales cost it; a probe no better says they did not."""
    rc = load_recipe({"data": {"source": "breast_cancer", "normalize": False}, "model": {"name": "mlp"}})
    eps = _epochs([(0.4, 0.85)] * 3, [(0.4, 0.85)] * 3)
    raw = [{"type": "inputs", "min": 0.0, "max": 4254.0, "std_max": 569.0, "std_min": 0.003, "std_ratio": 2e5,
            "abs_mean_max": 880.0}]
    for probe_acc, fires in ((0.97, True), (0.86, False)):
        rec = {"type": "norm_probe", "patch": {"data.normalize": True}, "steps": 30,
               "probe_quality": 2 * probe_acc - 1}  # accuracy over chance (2 classes)
        s = signal("unnormalized_inputs", RunView(rc, "classify", 2, (30,), raw + eps + [rec]))
        assert s.fires is fires
        assert s.find("normalised_quality_gain").value == pytest.approx(2 * (probe_acc - 0.85))


def test_vanishing_needs_a_gradient_at_the_last_layer():
    """Zero gradient everywhere (every unit of the last ReLU layer dead: no path back) is a cut
    network, dead_relu's; a first layer starved while the last still learns is vanishing."""
    rc = load_recipe({"data": {"source": "digits"}, "model": {"name": "mlp", "hidden": [128, 64]}})
    stuck = _epochs([(2.3, 0.1)] * 3, [(2.3, 0.1)] * 3)

    def probes(first: float, last: float) -> list[dict]:
        layer = lambda g: {"grad": g, "grad_mean": g / 100, "update": 1e-3}  # noqa: E731
        return [{"type": "probe", "step": s, "applied": True, "acts": {"2": {"dead": 1.0}, "4": {"dead": 1.0}},
                 "layers": {"0": layer(first), "2": layer(first), "4": layer(last)}} for s in (10, 20, 30)]

    cut = signal("vanishing_gradients", RunView(rc, "classify", 10, (64,), stuck + probes(0.0, 0.0)))
    assert not cut.fires and not cut.find("last layer has a gradient").fires
    assert signal("dead_relu", RunView(rc, "classify", 10, (64,), stuck + probes(0.0, 0.0))).fires
    starved = signal("vanishing_gradients", RunView(rc, "classify", 10, (64,), stuck + probes(1e-9, 0.5)))
    assert starved.fires


def test_vanishing_on_a_wide_first_layer_reads_the_ratio():
    """A five-layer sigmoid MLP on 16×16 shapes stuck at chance (uvadlc_notebooks#119): the first layer's
    gradient is 2e-4 of the last's, its norm 1.9e-4 — above AutoTrainer's 1e-4, which was set on small
    nets (the norm grows with √weights; this layer has 32k). A first layer with a norm of 2e-3 is not
    starved whatever the ratio says (its last layer's gradient is then huge)."""
    rc = load_recipe({"data": {"source": "digits"}, "model": {"name": "mlp", "hidden": [128] * 5,
                                                              "activation": "sigmoid"}})
    stuck = _epochs([(2.3, 0.1)] * 3, [(2.3, 0.1)] * 3)

    def probes(first: float, last: float) -> list[dict]:
        layer = lambda g: {"grad": g, "grad_mean": g / 180, "update": 1e-3}  # noqa: E731
        return [{"type": "probe", "step": s, "applied": True, "acts": {},
                 "layers": {"0": layer(first), "2": layer(first * 10), "4": layer(last)}} for s in (10, 20, 30)]

    for first, last, fires in ((1.9e-4, 0.95, True), (2e-3, 10.0, False)):
        s = signal("vanishing_gradients", RunView(rc, "classify", 10, (256,), stuck + probes(first, last)))
        assert s.fires is fires
        assert s.find("first_last_ratio").value == pytest.approx(first / last)


def test_out_of_range_output_needs_an_output_bounded_by_construction():
    """A regression whose outputs stayed ≥ 0 while the targets reach -2: a wiring error when the model
    ends in a sigmoid/ReLU, a symptom (a collapsed linear head) otherwise."""
    rc = load_recipe({"data": {"source": "sine"}, "model": {"name": "gru", "hidden": 8}})
    probes = [{"type": "probe", "step": s, "output": {"dim": 1, "min": 0.0, "max": 0.7}} for s in (10, 20)]
    facts = [{"type": "inputs", "labels": {"kind": "value", "min": -2.0, "max": 2.0}}] + probes
    for ends, fires in (("sigmoid", True), ("relu", True), ("logits", False), (None, True)):
        meta = [{"type": "meta", "layers": [], "activations": [], **({"ends_in": ends} if ends else {})}]
        s = signal("loss_output_mismatch", RunView(rc, "regress", 0, (20, 1), meta + facts))
        assert s.fires is fires, ends  # None: a run logged before the model's end was recorded


def test_nonfinite_evaluated_loss_is_a_finding():
    from liandan.doctor.rules.nonfinite_loss import nonfinite_loss

    rc = load_recipe({"data": {"source": "digits"}, "model": {"name": "mlp"}, "optim": {"name": "adam", "lr": 0.3}})
    finite_run = _epochs([(0.5, 0.9), (0.4, 0.92)], [(0.6, 0.88), (0.5, 0.9)])
    assert not signal("nonfinite_loss", RunView(rc, "classify", 10, (64,), finite_run)).fires
    inf_val = _epochs([(0.5, 0.9), (0.4, 0.92)], [(0.6, 0.88), (float("inf"), 0.9)])
    view = RunView(rc, "classify", 10, (64,), inf_val)
    assert signal("nonfinite_loss", view).find("nonfinite_eval_losses").value == 1
    f = nonfinite_loss(view)  # every training step finite: the finding names the evaluated split
    assert f.evidence["bad_steps"] == 0 and f.evidence["nonfinite_evals"] == [{"epoch": 1, "split": "val",
                                                                                "loss": float("inf")}]
    assert f.step == 20 and f.fixes[0].patch["optim.lr"] < 0.3 / 10  # lowered a decade or more


def test_regression_over_regularization_needs_the_ablation_probe():
    rc = load_recipe({"data": {"source": "diabetes"}, "model": {"name": "mlp", "hidden": [64]}, "loss": {"l2": 3.0}})
    eps = [{"type": "epoch", "epoch": i, "step": 10 * (i + 1), "train": {"loss": 1.0, "r2": 0.0},
            "val": {"loss": 1.1, "r2": -0.12}} for i in range(3)]
    for probe_r2, fires in ((0.45, True), (0.05, False)):  # the probe's record, as the live doctor kept it
        rec = {"type": "reg_probe", "patch": {"loss.l2": 0.0}, "steps": 30, "probe_quality": probe_r2}
        s = signal("over_regularization", RunView(rc, "regress", 0, (10,), eps + [rec]))
        assert s.fires is fires and s.find("r2_gap").value == 0.0  # R² below 0 counts as 0: no gap
    light = load_recipe(rc, {"loss.l2": 0.0})  # no heavy regulariser: no probe is trained at all
    assert not signal("over_regularization", RunView(light, "regress", 0, (10,), eps)).fires
    # a fit held at R² 0.89 that reaches 0.98 without the decay: less than 0.1 better, but the probe
    # leaves a sixth of the unexplained variance (slippi-ai#23); a noisy target where it leaves nearly
    # all of it (diabetes: 0.50 → 0.55) is no finding
    decay = load_recipe({"data": {"source": "sine"}, "model": {"name": "gru", "hidden": 32},
                         "optim": {"name": "adam", "weight_decay": 0.3}})
    for (tr, va, probe_r2), fires in (((0.90, 0.888, 0.981), True), ((0.90, 0.888, 0.92), False),
                                      ((0.52, 0.50, 0.55), False)):
        held = [{"type": "epoch", "epoch": i, "step": 10 * (i + 1), "train": {"loss": 0.1, "r2": tr},
                 "val": {"loss": 0.1, "r2": va}} for i in range(3)]
        rec = {"type": "reg_probe", "patch": {"optim.weight_decay": 0.0}, "steps": 30, "probe_quality": probe_r2}
        assert signal("over_regularization", RunView(decay, "regress", 0, (20, 1), held + [rec])).fires is fires


def test_probe_schedule_is_counted_in_steps():
    from liandan.doctor.probes import PROBE_COST, probe_interval

    assert probe_interval(0.02, 23, 0) == 7 and probe_interval(0.02, 23, 1) == 23  # digits-lenet
    assert probe_interval(0.02, 1000, 5) == math.ceil(PROBE_COST / 0.02)  # the budget, not a timing
    assert probe_interval(0.02, 4, 0) == 3 and probe_interval(0.5, 100, 2) == 3
    assert probe_interval(0.02, 23, 0, every=5) == 5


def test_overfitting_ranks_before_a_high_rate(quick_bench):
    """A run that memorises its training set and loses the validation set is overfitting first; a
    high rate that comes with it is reported too, as info (no longer suppressing overfitting)."""
    from liandan.doctor.engine import run_rules
    from liandan.doctor.view import view_from_run_dir

    base = view_from_run_dir(run_dir(quick_bench, "lr_high_wine_momentum"))  # large updates, a bouncing loss
    lr = base.lr
    tl = [0.5, 0.1, 0.02, 0.005, 0.003, 0.002]  # memorised
    vl = [0.6, 0.45, 0.5, 0.6, 0.75, 0.9]  # lowest at epoch 2, rising since
    epochs = _epochs(list(zip(tl, [0.8, 0.95, 1.0, 1.0, 1.0, 1.0], strict=True)),
                     list(zip(vl, [0.8, 0.83, 0.82, 0.8, 0.8, 0.8], strict=True)))
    recs = [r for r in base.records if r.get("type") != "epoch"] + epochs
    view = _with_range(RunView(base.recipe, base.task, base.num_classes, base.input_shape, recs, status="completed",
                               sizes=base.sizes), lr / 400, lr / 40, lr / 40)  # a rate 40× the range's top
    found = run_rules(view)
    assert [(f.code, f.severity) for f in found] == [("overfitting", "warning"), ("lr_too_high", "info")]
    assert "overfitting" in found[1].causes[-1]


def test_range_test_reads_the_descent_not_the_noise():
    from liandan.training.lr_finder import informative, suggest

    lrs = [10 ** (-7 + 8 * i / 99) for i in range(100)]
    flat = [2.3 + 0.02 * math.sin(7 * i) for i in range(100)]  # a ViT that needs warm-up: nothing to read
    assert not informative(flat)
    # noise at the flat start (a steep little dip at 1e-6), then the real descent around 1e-2
    curve = [1.0 - (0.08 if 12 <= i <= 14 else 0.0) - 0.6 / (1 + math.exp(-(math.log10(lrs[i]) + 2) * 4))
             for i in range(100)]
    assert informative(curve)
    assert 1e-3 < suggest(lrs, curve) < 1e-1


def test_lr_too_high_on_a_run_that_settles_asks_the_test():
    """Adam at 0.1 on a digits MLP settles at accuracy 0.88 without bouncing, with updates of 5 % of
    the weights per step, 8× above the range test's usable range: the test's own break (its loss
    climbed back above the start at 0.08) condemns the rate; without a break, the ablation probe at
    the test's suggestion must do clearly better — here 0.95, not 0.1 more but more than half of
    what the run left (mlx#188) — and one that does no better clears it."""
    rc = load_recipe({"data": {"source": "digits"}, "model": {"name": "mlp", "hidden": [128]},
                      "optim": {"name": "adam", "lr": 0.1}})
    eps = _epochs([(0.9, 0.7), (0.6, 0.8), (0.4, 0.88)], [(0.9, 0.7), (0.6, 0.8), (0.4, 0.88)])
    probes = [{"type": "probe", "step": s, "layers": {"0": {"update": 0.05}, "2": {"update": 0.05}}}
              for s in (10, 20, 30)]

    def view(broke: float | None, probe_acc: float | None) -> RunView:
        recs = [{"type": "lr_find", "source": "test", "suggestion": 0.0125, "low": 0.00125, "high": 0.0125,
                 "diverged_at": broke}]
        if probe_acc is not None:
            recs.append({"type": "rate_probe", "patch": {"optim.lr": 0.0125}, "steps": 30,
                         "probe_quality": (probe_acc - 0.1) / 0.9})
        return RunView(rc, "classify", 10, (64,), eps + probes + recs)

    s = signal("lr_too_high", view(0.08, None))
    assert s.fires and s.find("lr_at_sweep_break").margin > 0 and s.find("lower_rate_quality_gain") is None
    for probe_acc, fires in ((0.95, True), (0.90, False)):
        s = signal("lr_too_high", view(None, probe_acc))
        assert s.fires is fires
        assert s.find("lower_rate_quality_gain").value == pytest.approx((probe_acc - 0.88) / 0.9)
        assert s.find("shortfall_left_by_probe").value == pytest.approx((1 - probe_acc) / 0.12)
    healthy = view(None, 0.95)
    healthy.records[-2]["high"] = 0.2  # the rate inside the usable range: no probe is asked
    assert not signal("lr_too_high", healthy).fires


def test_ablation_probes_train_only_at_the_end():
    """A probe asked after an early epoch would train that epoch's steps and, cached, be compared
    with the finished run: it trains only once the run has ended (``phase == "end"``)."""
    from liandan.doctor.rules._retrain import confirms

    rc = load_recipe({"data": {"source": "digits"}, "model": {"name": "mlp"}})
    eps = _epochs([(0.9, 0.7)], [(0.9, 0.7)])
    asked: list[str] = []

    def train(v: RunView) -> dict:
        asked.append(v.phase)
        return {"type": "rate_probe", "patch": {}, "steps": 30, "probe_quality": 0.99}

    early = RunView(rc, "classify", 10, (64,), list(eps), phase="epoch")
    assert not confirms(early, "rate_probe", train, "gain").fires and asked == []
    end = RunView(rc, "classify", 10, (64,), list(eps), phase="end")
    assert confirms(end, "rate_probe", train, "gain").fires and asked == ["end"]
    assert confirms(end, "rate_probe", train, "gain").fires and asked == ["end"]  # cached: trained once


def test_lr_too_low_when_the_range_test_condemns_the_rate():
    """Adam at 1e-4 on a spirals MLP: steps of 0.08 % of the weights look healthy, yet the run stays
    near chance; the range test descends fastest at 1.1e-2, so 1e-4 is more than a decade under its
    usable range (vde6). A rate within a decade of the range is not condemned, nor is one in a
    network with a hidden layer narrower than its classes (the bottleneck holds it back)."""
    def view(hidden: list[int], low: float, probe: float | None = None) -> RunView:
        rc = load_recipe({"data": {"source": "spirals"}, "model": {"name": "mlp", "hidden": hidden},
                          "optim": {"name": "adam", "lr": 1e-4}})
        eps = _epochs([(1.1, 0.36), (1.05, 0.38), (1.03, 0.40)], [(1.1, 0.36), (1.05, 0.38), (1.02, 0.41)])
        probes = [{"type": "probe", "step": s, "layers": {"0": {"update": 7.6e-4}}} for s in (100, 200, 300, 400)]
        n = list(range(10, 410, 10))
        steps = [{"type": "steps", "steps": n, "loss": [1.1 - s * 2e-4 for s in n], "grad_norm": [1.0] * len(n),
                  "applied": [True] * len(n)}]  # 400 steps: travel 0.3, no few-steps case
        recs = [{"type": "lr_find", "source": "test", "suggestion": 10 * low, "low": low, "high": 10 * low}]
        if probe is not None:  # the rate ablation, measured: the recipe at the test's suggestion
            recs.append({"type": "rate_probe", "patch": {"optim.lr": 10 * low}, "steps": 400, "probe_quality": probe})
        return RunView(rc, "classify", 3, (2,), eps + probes + steps + recs)

    s = signal("lr_too_low", view([64, 64], 1.1e-3))
    assert s.fires and s.find("lr_far_below_range").margin > 0 and not s.find("update_ratio").fires
    # 1e-4 is only 5× under the range: not condemned by the curve; the rate changed alone decides
    assert not signal("lr_too_low", view([64, 64], 5e-4, probe=0.12)).fires  # run: quality 0.115
    s = signal("lr_too_low", view([64, 64], 5e-4, probe=0.9))
    assert s.fires and not s.find("condemned").fires and s.find("rate_ablation").fires
    assert not signal("lr_too_low", view([2], 1.1e-3, probe=0.9)).fires  # 2 units for 3 classes


@pytest.mark.parametrize("nan", [False, True])
def test_lr_too_high_by_the_rate_ablation(nan: bool):
    """Adam at 0.02 on a wide spirals MLP moves the weights only 0.5 % a step (no large-update
    signal) yet stays near chance; the range test's usable range ends at 5e-3, and the same recipe at
    its suggestion reaches 0.9: the rate alone, changed, is the cause. A probe that gains nothing
    names nothing; nor does one beside a run whose loss went NaN (the non-finite rules' story)."""
    rc = load_recipe({"data": {"source": "spirals"}, "model": {"name": "mlp", "hidden": [256, 256]},
                      "optim": {"name": "adam", "lr": 0.02}})
    eps = _epochs([(1.1, 0.36), (1.08, 0.38), (1.07, 0.40)], [(1.1, 0.36), (1.09, 0.38), (1.08, 0.41)])
    probes = [{"type": "probe", "step": s, "layers": {"0": {"update": 5e-3}}} for s in (100, 200, 300, 400)]
    n = list(range(10, 410, 10))
    loss = [1.1 - s * 1e-4 for s in n]
    if nan:
        loss[-1] = float("nan")
    steps = [{"type": "steps", "steps": n, "loss": loss, "grad_norm": [1.0] * len(n), "applied": [True] * len(n)}]
    rng = [{"type": "lr_find", "source": "test", "suggestion": 1e-3, "low": 1e-4, "high": 5e-3}]

    def probe(q: float) -> list[dict]:
        return [{"type": "rate_probe", "patch": {"optim.lr": 1e-3}, "steps": 400, "probe_quality": q}]

    gains = signal("lr_too_high", RunView(rc, "classify", 3, (2,), eps + probes + steps + rng + probe(0.9)))
    assert gains.fires is not nan and not gains.find("update_ratio").fires
    assert not signal("lr_too_high", RunView(rc, "classify", 3, (2,), eps + probes + steps + rng + probe(0.15))).fires


@pytest.mark.parametrize(("lr", "probe_q", "fires"), [(0.5, 0.92, True), (0.5, 0.05, False), (0.2, 0.92, False)])
def test_lr_too_high_by_the_typical_rate_where_the_range_test_is_flat(lr: float, probe_q: float, fires: bool):
    """LeNet-5 under plain SGD at 0.5 on digits stays at chance with steps of 0.7 % of the weights; its
    range test is flat (the net needs more steps to leave its plateau than the sweep spends on a decade),
    so no range says where the rate lies. The optimizer's typical rate stands in: 0.5 is a decade above
    SGD's 0.05, and the recipe at 0.05 reaches 0.93 (ds28481). A probe that gains nothing names nothing;
    a rate within a decade of the typical one is not probed (its probe record is never asked for)."""
    from liandan.doctor.rules.lr_too_high import reference_rate

    rc = load_recipe({"data": {"source": "digits"}, "model": {"name": "lenet5"}, "optim": {"name": "sgd", "lr": lr}})
    eps = _epochs([(2.30, 0.14), (2.31, 0.10), (2.31, 0.08)], [(2.32, 0.10), (2.30, 0.11), (2.30, 0.10)])
    probes = [{"type": "probe", "step": s, "layers": {"0": {"update": 7e-3}}} for s in (1, 45, 90, 135)]
    n = list(range(1, 136))
    steps = [{"type": "steps", "steps": n, "loss": [2.30 + 0.01 * (i % 3) for i in n], "grad_norm": [0.2] * len(n),
              "applied": [True] * len(n)}]
    flat = [{"type": "lr_find", "source": "test", "suggestion": 1e-3, "low": 1e-4, "high": 1e-2, "informative": False}]
    probe = [{"type": "rate_probe", "patch": {"optim.lr": 0.05}, "steps": 135, "probe_quality": probe_q}]
    view = RunView(rc, "classify", 10, (1, 8, 8), eps + probes + steps + flat + probe)
    assert reference_rate(view) == (0.05, "the typical rate for sgd")
    s = signal("lr_too_high", view)
    assert s.fires is fires and s.find("lr_over_typical").fires is (lr >= 0.5)


def test_overfitting_when_the_training_error_is_a_tenth_of_the_validation_error():
    """A transformer on 90 digits: one training sample wrong (1.1 % error, loss 0.19 — not near
    zero) against 30 % on 853 validation samples, the validation loss flat: the training set is
    memorised all the same (yolov7#1241). A training error of 5 % against 30 % is not memorised."""
    rc = load_recipe({"data": {"source": "digits"}, "model": {"name": "transformer"}})
    for train_acc, fires in ((0.989, True), (0.95, False)):
        eps = _epochs([(0.5, 0.9), (0.25, 0.97), (0.19, train_acc)], [(1.0, 0.69), (1.02, 0.70), (1.0, 0.70)])
        s = signal("overfitting", RunView(rc, "classify", 10, (64,), eps, sizes={"train": 90, "val": 853}))
        assert s.fires is fires
        assert s.find("val_over_train_error").value == pytest.approx(0.3 / (1 - train_acc))


def test_a_loss_climb_the_run_recovered_from_is_no_bounce():
    """A warmed-up ResNet at 0.2 climbs to 1.95× its best loss at the peak of its warmup, then its
    decay takes it to its best loss and accuracy 0.93: a transient. The same climb with a loss that
    ends 1.5× above its best, the validation loss up from its best too, is a rate that keeps the run
    bouncing; with the validation loss still falling to its best at the end (0.6 → 0.4 → 0.3), the
    windowed training loss bounces around a descent (a narrow ResNet at 0.05 on digits, automl#567)."""
    rc = load_recipe({"data": {"source": "digits"}, "model": {"name": "mlp"}, "optim": {"name": "momentum", "lr": 0.2}})
    probes = [{"type": "probe", "step": s, "layers": {"0": {"update": 0.03}}} for s in (50, 100, 150)]
    recs = [{"type": "lr_find", "source": "test", "suggestion": 0.05, "low": 0.005, "high": 0.05},
            {"type": "rate_probe", "patch": {"optim.lr": 0.05}, "steps": 200, "probe_quality": 0.9}]
    for end, val_end, fires in ((0.3, 0.3, False), (0.75, 0.36, True), (0.75, 0.3, False)):
        eps = _epochs([(0.6, 0.8), (0.4, 0.9), (0.3, 0.93)], [(0.6, 0.8), (0.3, 0.9), (val_end, 0.93)])
        loss = [2.0 - i * 0.03 for i in range(50)] + [1.0] * 20 + [2.0] * 30 + [0.6] * 80 + [end] * 20
        n = list(range(1, len(loss) + 1))
        steps = [{"type": "steps", "steps": n, "loss": loss, "grad_norm": [1.0] * len(n), "applied": [True] * len(n)}]
        s = signal("lr_too_high", RunView(rc, "classify", 10, (64,), eps + probes + steps + recs))
        assert s.find("loss_rise").fires and s.fires is fires
        assert s.find("loss_end_over_best").value == pytest.approx(end / 0.6 if end > 0.6 else 1.0, rel=0.05)


def test_lr_too_low_on_a_slow_run_from_scratch_the_range_test_condemns():
    """Plain SGD at 3e-4 on a linear diabetes model: validation R² 0.40 clears the "learns poorly"
    bar, but the loss fell only 16 % at a rate 1,700× under the range test's suggestion (ustcml47).
    A fine-tune that falls as little at that rate starts near its answer: no finding."""
    def view(from_run: str | None) -> RunView:
        rc = load_recipe({"data": {"source": "diabetes"}, "model": {"name": "mlp", "hidden": [], "from_run": from_run},
                          "optim": {"name": "sgd", "lr": 3e-4}})
        eps = [{"type": "epoch", "epoch": i, "step": 10 * (i + 1),
                "train": {"loss": 0.75 - 0.02 * i, "r2": 0.25 + 0.02 * i},
                "val": {"loss": 0.66 - 0.01 * i, "r2": 0.36 + 0.02 * i}} for i in range(3)]
        probes = [{"type": "probe", "step": s, "layers": {"0": {"update": 1e-3}}} for s in (100, 200, 300, 400)]
        n = list(range(10, 410, 10))
        steps = [{"type": "steps", "steps": n, "loss": [0.84 - s * 3.4e-4 for s in n], "grad_norm": [1.0] * len(n),
                  "applied": [True] * len(n)}]
        recs = [{"type": "lr_find", "source": "test", "suggestion": 0.51, "low": 0.051, "high": 0.51}]
        return RunView(rc, "regress", 0, (10,), eps + probes + steps + recs)

    s = signal("lr_too_low", view(None))
    assert s.fires and s.find("condemned").fires and not s.find("quality").fires
    assert not signal("lr_too_low", view("runs/base")).fires


@pytest.mark.parametrize(("probe_val_loss", "travel_per_step", "fires"),
                         [(1.34, 1.9e-4, True), (2.0, 1.9e-4, False), (1.34, 4e-3, False)])
def test_lr_too_low_on_a_language_model_by_the_rate_ablation(probe_val_loss: float, travel_per_step: float,
                                                             fires: bool):
    """A tiny GPT on arith under AdamW at 3e-5: 57 steps move its weights 0.01 of their size in all,
    the loss falls 28 % (not "poorly" by a language model's 20 % bar), and there is no accuracy scale to
    call it below its ceiling. The range test's usable range starts at 7e-4 and the recipe at its
    suggestion ends at validation loss 1.34 against the run's 2.16 (1.6× lower): the rate. A probe only
    1.08× lower names nothing; nor is a run whose weights travelled 0.2 asked at all (DeepFD's
    learning-rate fault class)."""
    rc = load_recipe({"data": {"source": "arith"}, "model": {"name": "gpt", "size": "tiny"},
                      "optim": {"name": "adamw", "lr": 3e-5}})
    n = list(range(1, 58))
    steps = [{"type": "steps", "steps": n, "loss": [3.0 - 0.83 * s / 57 for s in n], "grad_norm": [1.0] * len(n),
              "applied": [True] * len(n)}]
    probes = [{"type": "probe", "step": s, "layers": {"0": {"update": travel_per_step}}} for s in (1, 20, 40, 57)]
    eps = [{"type": "epoch", "epoch": i, "step": 19 * (i + 1), "train": {"loss": tl}, "val": {"loss": vl}}
           for i, (tl, vl) in enumerate([(2.8, 2.7), (2.45, 2.4), (2.18, 2.16)])]
    recs = [{"type": "lr_find", "source": "test", "suggestion": 7e-3, "low": 7e-4, "high": 7e-3},
            {"type": "rate_probe", "patch": {"optim.lr": 7e-3}, "steps": 57, "probe_quality": None,
             "probe_metrics": {"val": {"loss": probe_val_loss}}}]
    s = signal("lr_too_low", RunView(rc, "lm", 0, (12,), steps + probes + eps + recs))
    assert s.fires is fires
    if fires:
        assert s.find("run_over_probe_val_loss").value == pytest.approx(2.16 / probe_val_loss)


@pytest.mark.parametrize(("probe_val_loss", "fires"), [(1.1, True), (1.9, False)])
def test_lr_too_high_on_a_language_model_asks_the_probe_by_validation_loss(probe_val_loss: float, fires: bool):
    """A tiny GPT on grammar under AdamW at 0.03 (LlamaFactory#1122): steps of 2 % of the weights, 3.5×
    above the range test's usable range (to 8.5e-3), a loss still falling and no accuracy scale to fall
    short of. The recipe at the test's suggestion ends at validation loss 1.1 against the run's 2.0: the
    rate. A probe only 1.05× lower names nothing."""
    rc = load_recipe({"data": {"source": "grammar", "task": "lm"}, "model": {"name": "gpt", "size": "tiny"},
                      "optim": {"name": "adamw", "lr": 0.03}})
    n = list(range(1, 58))
    steps = [{"type": "steps", "steps": n, "loss": [3.0 - 0.9 * s / 57 for s in n], "grad_norm": [1.0] * len(n),
              "applied": [True] * len(n)}]
    probes = [{"type": "probe", "step": s, "layers": {"0": {"update": 0.022}}} for s in (1, 20, 40, 57)]
    eps = [{"type": "epoch", "epoch": i, "step": 19 * (i + 1), "train": {"loss": tl}, "val": {"loss": vl}}
           for i, (tl, vl) in enumerate([(3.0, 2.31), (2.22, 2.23), (2.09, 2.0)])]
    recs = [{"type": "lr_find", "source": "test", "suggestion": 8.5e-3, "low": 8.5e-4, "high": 8.5e-3,
             "diverged_at": 0.095},
            {"type": "rate_probe", "patch": {"optim.lr": 8.5e-3}, "steps": 57, "probe_quality": None,
             "probe_metrics": {"val": {"loss": probe_val_loss}}}]
    v = RunView(rc, "lm", 0, (12,), steps + probes + eps + recs)
    v.phase = "end"
    s = signal("lr_too_high", v)
    assert s.fires is fires
    assert s.find("run_over_probe_val_loss").value == pytest.approx(2.0 / probe_val_loss)


def test_a_rate_above_its_optimizers_usual_one_is_not_too_low_on_a_probe_alone():
    """A GRU on digits under Adam at 5e-3, annealed by a cosine, ends at 0.83; its range test's usable
    range starts at 0.02, and the recipe at the test's 0.04 reaches 0.92 — yet 5e-3 is five times Adam's
    usual rate: no lr_too_low. The same run at 3e-4 (under the usual 1e-3) is probed as before."""
    def view(lr: float) -> RunView:
        rc = load_recipe({"data": {"source": "digits"}, "model": {"name": "gru"}, "optim": {"name": "adam", "lr": lr}})
        eps = _epochs([(1.7, 0.49), (0.69, 0.80), (0.51, 0.87)], [(0.94, 0.73), (0.61, 0.84), (0.55, 0.85)])
        probes = [{"type": "probe", "step": s, "layers": {"0": {"update": 0.02}}} for s in (1, 45, 90, 135)]
        n = list(range(1, 136))
        steps = [{"type": "steps", "steps": n, "loss": [2.3 - 1.8 * i / 135 for i in n], "grad_norm": [0.5] * len(n),
                  "applied": [True] * len(n)}]
        recs = [{"type": "lr_find", "source": "test", "suggestion": 0.04, "low": 0.02, "high": 0.08},
                {"type": "rate_probe", "patch": {"optim.lr": 0.04}, "steps": 135, "probe_quality": 0.92}]
        return RunView(rc, "classify", 10, (8, 8), eps + probes + steps + recs)

    above = signal("lr_too_low", view(5e-3))
    assert not above.fires and not above.find("lr_at_most_typical").fires
    assert signal("lr_too_low", view(3e-4)).fires


def test_a_flat_sweep_leaves_the_typical_rate_to_say_the_rate_is_upstream_of_a_blowup():
    """A fine-tuned LeNet under Nesterov at 0.5 blows up; its range test's sweep never fell before
    it broke at 6.6 (no range). The rate is 50× Nesterov's usual 0.01: it is the cause upstream of the
    blow-up and is reported beside it. At 0.05 (5×), or with no test consulted, it stays hidden."""
    from liandan.doctor.lr_opinion import rate_above_range

    def view(lr: float, consulted: bool = True) -> RunView:
        rc = load_recipe({"data": {"source": "shapes"}, "model": {"name": "lenet5"},
                          "optim": {"name": "nesterov", "lr": lr}})
        flat = [{"type": "lr_find", "source": "test", "suggestion": 8.8e-7, "low": 8.8e-8, "high": 1.3e-4,
                 "informative": False, "diverged_at": 6.6}]
        return RunView(rc, "classify", 10, (1, 16, 16), flat if consulted else [])

    assert rate_above_range(view(0.5)) == {"lr_too_high"}
    assert rate_above_range(view(0.05)) == set()
    assert rate_above_range(view(0.5, consulted=False)) == set()
