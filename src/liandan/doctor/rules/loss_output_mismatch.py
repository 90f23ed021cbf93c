"""loss_output_mismatch: the loss does not fit the model's output or the labels.

Checks (AutoTrainer's improper output/loss, DeepDiagnosis's "out of range", TheDeepChecker's
"redundant softmax" fault class, UMLAUT's "missing softmax / from_logits"):
- the model already ends in softmax and the loss applies it again (cross-entropy on
  probabilities: outputs ≥ 0 whose rows sum to 1);
- class labels outside the output size (label ≥ number of outputs, or < 0);
- binary cross-entropy on a single-label multi-class problem (> 2 classes);
- BCE on regression targets outside [0, 1] (the loss's range);
- integer class labels regressed with a regression loss;
- a negative loss value where the loss cannot be negative;
- regression through a softmax over one output (the constant 1), or through an output that is never
  negative (sigmoid, ReLU, softmax) while the standardised targets reach below -0.5.
These are wiring errors, not symptoms: no second signal is needed.
Notes: 损失函数 (分类: 交叉熵, softmax "(0,1), 和为1"; 回归: MSE/MAE), 原始输出 logits vs predictions.
"""

from __future__ import annotations

from liandan.doctor.findings import Finding
from liandan.doctor.rules._common import fix, fixes, g, make
from liandan.doctor.rules._signal import Signal, above, all_of, any_of, below, flag, signal_of
from liandan.doctor.view import RunView, finite
from liandan.registry import register_rule

CODE = "loss_output_mismatch"
PROB_LOSSES = ("cross_entropy", "kl_div", "margin_ranking", "distill")


REGRESSION_LOSSES = ("mse", "l1", "mae", "smooth_l1", "huber")
# Standardised targets (regression: the training split's mean 0, std 1) below -0.5: a share of them
# (about 30 % of a normal's) that an output bounded below by 0 can never reach.
NEG_REACH = 0.5
NON_NEGATIVE = ("sigmoid", "relu", "softmax", "softplus")


def _loss(view: RunView) -> str:
    from liandan.training.tasks import task_class

    tc = task_class(view.task)
    return view.recipe.loss.name or tc.default_loss or tc.own_loss or ("cross_entropy" if view.is_classification
                                                                       else "mse")


def _outputs(view: RunView) -> list[dict]:
    return [p["output"] for p in view.probes if isinstance(p.get("output"), dict)]


def _facts(view: RunView) -> tuple[str, dict | None, dict]:
    """(loss name, the probed output's facts, the label facts)."""
    out = next((p["output"] for p in view.probes if "output" in p), None)
    lab = (view.inputs or {}).get("labels") or next((p["labels"] for p in view.probes if "labels" in p), None) or {}
    return _loss(view), out, lab


def _bounded_below(view: RunView) -> bool:
    """The output is ≥ 0 by construction (a sigmoid, ReLU or softmax at the end), not by accident: a
    linear head whose outputs happen to be ≥ 0 (a collapsed model) is a symptom, not a wiring error.
    A run logged before the model's end was recorded counts as bounded (the observed outputs decide)."""
    ends = view.meta.get("ends_in")
    return ends is None or ends in NON_NEGATIVE


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """Any wiring error; all but the softmax check (rows of the output summing to 1 within 1e-3)
    are facts of the recipe and data, not of the trajectory."""
    loss, out, lab = _facts(view)
    dim = (out or {}).get("dim", view.num_classes)
    lo = finite(view.loss)
    outs = _outputs(view)
    checks = [
        all_of(flag("probability loss on non-negative outputs", bool(out) and loss in PROB_LOSSES
                    and out.get("dim", 1) > 1 and out.get("min", -1) >= 0),
               below("row_sum_deviation", (out or {}).get("row_sum_dev", 1), 1e-3), name="softmax_twice"),
        flag("labels_outside_outputs", lab.get("kind") == "class" and view.is_classification
             and (lab["max"] >= dim or lab["min"] < 0)),
        flag("bce_multiclass", loss == "bce_with_logits" and view.is_classification and view.num_classes > 2),
        flag("bce_targets_outside_01", loss == "bce_with_logits" and view.is_regression
             and lab.get("kind") == "value" and (lab["min"] < -1e-6 or lab["max"] > 1 + 1e-6)),
        flag("regress_class_ids", view.is_regression and bool(view.class_names)),
        flag("negative_loss", bool(lo) and min(lo) < -1e-6
             and loss in ("cross_entropy", "bce_with_logits", "mse", "l1", "mae", "smooth_l1")),
        # a softmax over one output is the constant 1 (SO 34311586, 45442843): nothing is learned
        flag("constant_one_output", view.is_regression and loss in REGRESSION_LOSSES and bool(outs)
             and all(o.get("dim") == 1 and abs(o["min"] - 1) < 1e-6 and abs(o["max"] - 1) < 1e-6 for o in outs)),
        # a sigmoid/ReLU/softmax output (≥ 0 on every probe) regressing standardised targets that go
        # well below 0 (DeepDiagnosis "out of range"): those targets are out of its reach
        all_of(flag("non-negative regression output", view.is_regression and loss in REGRESSION_LOSSES
                    and _bounded_below(view) and bool(outs) and all(o["min"] >= 0 for o in outs)
                    and not all(abs(o["min"] - 1) < 1e-6 and abs(o["max"] - 1) < 1e-6 for o in outs)),
               # how far the targets reach below 0 (a ratio against 0.5: the threshold must be positive)
               above("target_reach_below_zero", -lab.get("min", 0.0) if lab.get("kind") == "value" else 0.0,
                     NEG_REACH),
               name="output_out_of_range"),
    ]
    return any_of(*checks)


@register_rule(CODE, phase="step", suppresses=("underfitting", "overfitting", "lr_too_low", "lr_too_high",
                                               "vanishing_gradients"))
def loss_output_mismatch(view: RunView) -> Finding | None:
    """The loss does not match the output layer or the labels (softmax twice, BCE on K classes, ...)."""
    sig = signal(view)
    if not sig:
        return None
    has = {p.name: p.fires for p in sig.parts}
    loss, out, lab = _facts(view)
    step = view.probes[0]["step"] if view.probes else None
    ev: dict = {"loss": loss, "task": view.task, "outputs": (out or {}).get("dim", view.num_classes)}
    causes, fx = [], []
    output = view.recipe.model.output
    logits = fix(view, CODE, "logits", {"model.output": "logits"})
    kinds = [a["kind"] for a in view.meta.get("activations", [])]
    if has["softmax_twice"]:
        ev.update(output_min=out["min"], row_sum_deviation=out["row_sum_dev"])
        ends = (" (model.output: softmax)" if output == "softmax"
                else " (the model ends in a Softmax layer)" if kinds and kinds[-1] == "softmax" else "")
        causes.append(f"the model outputs probabilities{ends} — every row sums to 1 — and {loss} applies softmax "
                      "again: the logits are squashed into [0, 1], gradients shrink and predictions flatten")
        fx += [logits, fix(view, CODE, "remove_softmax")]
    if has["labels_outside_outputs"]:
        dim = (out or {}).get("dim", view.num_classes)
        ev.update(label_min=lab["min"], label_max=lab["max"])
        causes.append(f"class labels range over {lab['min']}..{lab['max']} but the model has {dim} outputs")
        fx += [fix(view, CODE, "num_classes", {"model.num_classes": lab["max"] + 1}),
               fix(view, CODE, "relabel")]
    if has["bce_multiclass"]:
        ev["classes"] = view.num_classes
        causes.append(f"binary cross-entropy on a {view.num_classes}-class single-label problem: it scores each "
                      "class independently instead of making the classes compete, so probabilities need not sum "
                      "to 1 and the one-hot negatives dominate the loss")
        fx.append(fix(view, CODE, "cross_entropy", {"loss.name": "cross_entropy"}))
    if has["bce_targets_outside_01"]:
        ev.update(target_min=lab["min"], target_max=lab["max"])
        causes.append(f"binary cross-entropy needs targets in [0, 1] but they range over "
                      f"[{g(lab['min'])}, {g(lab['max'])}]: the loss is unbounded below and meaningless")
        fx.append(fix(view, CODE, "mse", {"loss.name": "mse"}))
    if has["regress_class_ids"]:
        ev["classes"] = len(view.class_names)
        causes.append(f"the data has {len(view.class_names)} classes but the task is regression: class ids are "
                      f"treated as numbers ({loss} on ids 0..{len(view.class_names) - 1} imposes an order and "
                      "distances that do not exist)")
        fx.append(fix(view, CODE, "classify", {"task": "classify", "loss.name": "cross_entropy"}))
        fx.append(fix(view, CODE, "classify", {"task": "classify"}))
    if has["constant_one_output"]:
        ev.update(output_min=out["min"], output_max=out["max"])
        causes.append("every prediction is exactly 1: a softmax over a single output is the constant 1 "
                      f"(exp(z) / exp(z)), so {loss} cannot move and nothing is learned")
        fx.append(logits)
    if has["output_out_of_range"]:
        ev.update(output_min=min(o["min"] for o in _outputs(view)), target_min=lab["min"])
        act = f" (model.output: {output})" if output != "logits" else ""
        causes.append(f"the outputs are never negative{act} — a sigmoid, ReLU or softmax output — but the "
                      f"standardised targets reach {g(lab['min'])}: those targets are out of the output's range")
        fx.append(logits)
    lo = finite(view.loss)
    if has["negative_loss"]:
        ev["min_loss"] = min(lo)
        causes.append(f"{loss} became negative ({g(min(lo))}): targets or outputs are outside the loss's domain")
    return make(view, CODE, "error", step, ev, causes, fixes(*fx))
