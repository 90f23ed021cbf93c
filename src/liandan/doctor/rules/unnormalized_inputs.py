"""unnormalized_inputs: input features (or regression targets) on wildly different or huge scales.

Symptom, from the first training batches: a feature whose mean or standard deviation exceeds
10, or per-feature standard deviations that differ by more than 100×, or features far off centre
(root-mean-square feature mean > 0.5 × the root-mean-square feature std: raw [0, 1] pixels sit near
1, standardised data near 0; LeCun et al. 1998, Efficient BackProp §4.3), or regression targets
whose mean or std exceeds 10 (scale, not range: standardised data keeps a few outliers). A range rule alone fires on
healthy runs (UMLAUT flagged all 49 normal CIFAR models with "input exceeds limits";
DeepDiagnosis's [-1, 1] check likewise), so it needs a second signal: the run learns poorly,
its loss went non-finite, or saturated units — or, where the run learns passably and
``data.normalize`` is off, an ablation probe (the recipe with standardised inputs, for the run's
steps, a ``norm_probe`` record) ends clearly above it (:func:`._retrain.gain`: ≥ 0.1 quality, or
≥ 0.05 while leaving at most half its shortfall): the scales cost it that much.
Cockpit shows mis-scaled data in the gradient histogram (cockpit-experiments ``06_preprocessing``).
Notes: 归一化 (Normalization) "加快训练速度; 调整输入数据 … 的分布"; BatchNorm "减小不同特征的偏差".
"""

from __future__ import annotations

from liandan.doctor.findings import Finding
from liandan.doctor.rules._common import fix, fixes, g, lower_lr, make
from liandan.doctor.rules._retrain import ablation, confirms, measured
from liandan.doctor.rules._signal import Signal, above, all_of, any_of, count, flag, learns_poorly, signal_of, silent
from liandan.doctor.view import RunView, median
from liandan.registry import register_rule

CODE = "unnormalized_inputs"
RANGE, RATIO = 10.0, 100.0
RECORD, NORMALIZE = "norm_probe", {"data.normalize": True}
CENTRE = 0.5  # rms feature mean over rms feature std: ≈ 0 standardised, ≈ 1 for raw [0, 1] pixels


def _scales(inp: dict) -> tuple[float, float, float]:
    """(largest feature std or |mean|, std ratio between features, regression target scale)."""
    lab = inp.get("labels") or {}
    # Scale, not range: standardised data can still hold a few outliers beyond ±10.
    big = max(inp.get("std_max", 0.0), inp.get("abs_mean_max", 0.0))
    target = max(abs(lab.get("mean", 0)), lab.get("std", 0)) if lab.get("kind") == "value" else 0.0
    return big, inp.get("std_ratio", 1.0), target


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """Feature std/|mean| or target scale > 10 or feature std ratio > 100, and a second signal:
    the run learns poorly, a non-finite step, or a layer > 50 % saturated."""
    inp = view.inputs
    if not inp:
        return silent("no inputs record")
    big, ratio, target = _scales(inp)
    sat = [median(v) for v in view.act_series("saturated", view.last_probes(3)).values()]
    scaled = any_of(above("feature_scale", big, RANGE), above("std_ratio", ratio, RATIO),
                    above("target_scale", target, RANGE), above("off_centre", inp.get("off_centre", 0.0), CENTRE),
                    name="scaled")
    suffers = [learns_poorly(view), count("bad_steps", len(view.bad_steps())),
               above("max_saturated", max(sat), 0.5, "odds") if sat else flag("max_saturated", False)]
    if scaled.fires and not any(s.fires for s in suffers) and not view.recipe.data.normalize:
        suffers.append(_probe_gain(view))  # the run learns passably: does standardising do clearly better?
    return all_of(scaled, any_of(*suffers, name="suffers"))


def _probe_gain(view: RunView) -> Signal:
    """The ablation probe (:mod:`._retrain`, a ``norm_probe`` record): the recipe with standardised
    inputs, for the run's steps, ends clearly above the run — the scales cost it that much."""
    return confirms(view, RECORD, lambda v: ablation(v, RECORD, NORMALIZE), "normalised_quality_gain")


@register_rule(CODE, phase="epoch", suppresses=("underfitting", "lr_too_high", "lr_too_low", "dead_relu",
                                                "saturated_activations", "vanishing_gradients"))
def unnormalized_inputs(view: RunView) -> Finding | None:
    """Inputs or targets are far from zero-mean unit-scale and training suffers for it."""
    if not signal(view):
        return None
    inp = view.inputs
    lab = inp.get("labels") or {}
    big, ratio, target = _scales(inp)
    ev = {"input_min": inp["min"], "input_max": inp["max"], "feature_std_max": inp.get("std_max"),
          "feature_std_min": inp.get("std_min"), "std_ratio": ratio, "features": inp.get("features"),
          "normalize": view.recipe.data.normalize, "quality": view.quality()}
    causes = []
    if big > RANGE or ratio > RATIO:
        causes.append(f"inputs range over [{g(inp['min'])}, {g(inp['max'])}] and feature scales differ ×{ratio:.3g} "
                      f"(std {g(inp.get('std_min', 0))} … {g(inp.get('std_max', 0))}): the loss surface is "
                      "stretched along the large features, so one learning rate is too big for them and too "
                      "small for the rest")
    centre = inp.get("off_centre", 0.0)
    if centre > CENTRE:
        ev["off_centre"] = centre
        causes.append(f"the features sit {centre:.2g} standard deviations from zero on average (all in "
                      f"[{g(inp['min'])}, {g(inp['max'])}]): every unit of the first layer gets inputs of one sign, "
                      "so its weights can only move together (zig-zag updates, LeCun's Efficient BackProp)")
    if target > RANGE:
        ev["target_min"], ev["target_max"] = lab["min"], lab["max"]
        causes.append(f"regression targets range over [{g(lab['min'])}, {g(lab['max'])}]: squared errors "
                      f"and their gradients are ~{g(target**2)}× too large")
    if not view.recipe.data.normalize:
        causes.append("data.normalize is off: features are not standardised with training statistics")
    rec = measured(view, RECORD)
    if rec is not None:
        ev.update(probe_quality=rec["probe_quality"], probe_steps=rec["steps"])
        causes.append(f"the same recipe with data.normalize reaches quality {rec['probe_quality']:.2f} "
                      f"(run: {max(view.quality(), 0.0):.2f}) in {rec['steps']} steps")
    fx = fixes(
        fix(view, CODE, "normalize", {"data.normalize": True}),
        fix(view, CODE, "batchnorm", {"model.norm": "batch"}),
        fix(view, CODE, "lower_lr", {"optim.lr": lower_lr(view)}),
        fix(view, CODE, "log_transform"),
    )
    first = view.steps[0] if view.steps else None
    return make(view, CODE, "warning", first, ev, causes, fx)
