"""saturated_activations: sigmoid/tanh units sit on their flat tails, where the derivative is ~0.

Symptom (DeepDiagnosis, Wardat et al. ICSE 2022): > 50 % of a layer's pre-activations beyond
±5 for sigmoid (sigmoid'(5) = 0.0066; ±2.5 for tanh, whose derivative is 4·sigmoid'(2x)).
We also count a network whose saturating layers average ≥ 25 % beyond the threshold: healthy
sigmoid/tanh nets (Xavier init, standardised inputs) sit near 0 %. Second signal: the run does
not learn well (best quality < 0.8). Mean over the last three probes.
Causes and fixes: notes 梯度消失 原因 1 (激活函数饱和), 解决 1–4.
"""

from __future__ import annotations

from liandan.doctor.findings import Finding
from liandan.doctor.probes import SATURATION
from liandan.doctor.rules._common import fix, fixes, g, he_init_patch, init_desc, layer_numbers, lower_lr, make, pct
from liandan.doctor.rules._signal import Signal, above, all_of, any_of, negate, signal_of, silent
from liandan.doctor.view import RunView, median, typical_lr
from liandan.registry import register_rule

CODE = "saturated_activations"
LAYER, MEAN = 0.5, 0.25


def _saturated(view: RunView) -> dict[str, float]:
    return {k: median(v) for k, v in view.act_series("saturated", view.last_probes(3)).items()}


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """A layer > 50 % saturated or the mean ≥ 25 %, and the best quality stayed below 0.8."""
    sat = _saturated(view)
    if not sat:
        return silent("no sigmoid/tanh layer probed")
    return all_of(any_of(above("worst_saturated", max(sat.values()), LAYER, "odds"),
                         above("mean_saturated", sum(sat.values()) / len(sat), MEAN, "odds", strict=False)),
                  negate(above("best_quality", view.quality(best=True), 0.8, "odds", strict=False),
                         "best_quality < 0.8"))


@register_rule(CODE, phase="epoch", suppresses=("underfitting", "lr_too_low"))
def saturated_activations(view: RunView) -> Finding | None:
    """Sigmoid/tanh pre-activations are mostly beyond ±5 (±2.5): gradients through them vanish."""
    if not signal(view):
        return None
    sat = _saturated(view)
    mean = sum(sat.values()) / len(sat)
    worst = max(sat, key=sat.get)
    first_step = next((p["step"] for p in view.probes
                       if any(a.get("saturated", 0) > LAYER for a in p.get("acts", {}).values())),
                      view.probes[-1]["step"])
    kind = view.act_kind(worst)
    thr = SATURATION.get(kind, 5.0)
    kinds = view.act_kinds()
    n = kinds.get("sigmoid", 0) + kinds.get("tanh", 0)
    label = "sigmoid" if kinds.get("sigmoid", 0) >= kinds.get("tanh", 0) else "tanh"
    ev = {"mean_saturated": mean, "worst_layer": worst, "worst_saturated": sat[worst],
          "saturated_layers": sum(v > LAYER for v in sat.values()), "threshold": thr,
          "layer_saturation": layer_numbers(sat, "{:.3f}"), "quality": view.quality()}
    causes = [f"{n} {label} layers, {pct(mean)} of pre-activations beyond ±{thr:g} on average "
              f"({pct(sat[worst])} in layer {worst}): their derivative is < 1 % of its peak, so gradients vanish"]
    m = view.recipe.model
    if m.init in ("normal", "uniform", "constant"):
        causes.append(f"{init_desc(view)}: weights this large give pre-activations of std "
                      f"{g(_pre_std(view, worst))} — Xavier init keeps them near 1 (Glorot & Bengio 2010)")
    inp = view.inputs or {}
    if not view.recipe.data.normalize and max(abs(inp.get("max", 0)), abs(inp.get("min", 0))) > 5:
        causes.append(f"unnormalised inputs up to {g(max(abs(inp['max']), abs(inp['min'])))} drive the first "
                      "layer's units into saturation")
    if view.lr > 3 * typical_lr(view.optimizer):
        causes.append(f"learning rate {view.lr:g}: large updates grow the weights until units saturate")
    if not view.meta.get("norms"):
        causes.append("no normalisation layer re-centres the pre-activations")
    fx = fixes(
        fix(view, CODE, "relu_he", he_init_patch(view)),
        fix(view, CODE, "batchnorm", {"model.norm": "batch"}),
        fix(view, CODE, "xavier", {"model.init": "xavier_uniform"}),
        fix(view, CODE, "normalize", {"data.normalize": True}),
        fix(view, CODE, "residual"),
        fix(view, CODE, "lower_lr", {"optim.lr": lower_lr(view)}) if view.lr > 3 * typical_lr(view.optimizer)
        else None,
    )
    return make(view, CODE, "warning", first_step, ev, causes, fx)


def _pre_std(view: RunView, layer: str) -> float:
    vals = [p["acts"][layer]["pre_std"] for p in view.last_probes(3) if layer in p.get("acts", {})
            and "pre_std" in p["acts"][layer]]
    return median(vals, 0.0)
