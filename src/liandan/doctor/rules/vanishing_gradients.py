"""vanishing_gradients: the first layers get (almost) no gradient, so they do not learn.

Symptom (AutoTrainer, Zhang et al. ICSE 2021): G_first/G_last < 1e-3 and G_first small (AutoTrainer:
< 1e-4; here < 1e-3, as the norm grows with the layer's size), the L2 norms of the first and last weight
gradients; or the first layer's mean |g| < 1e-7
(DeepDiagnosis; SageMaker Debugger's VanishingGradient default) while the last layer still gets
one — zero gradients everywhere are a cut network (a ReLU layer entirely dead: ``dead_relu``; a
zero init: ``symmetry``), not a gradient shrinking on its way back. Medians over the probe steps.
Second signal, as AutoTrainer: the run also fails to converge (a small gradient alone on a run
that learns well is not a finding).
Causes and fixes: notes 梯度消失 (原因 1–4, 解决 1–7).
"""

from __future__ import annotations

from liandan.doctor.findings import Finding
from liandan.doctor.rules._common import (
    fix,
    fixes,
    he_init_patch,
    hidden_widths,
    init_desc,
    layer_numbers,
    make,
    pct,
)
from liandan.doctor.rules._signal import (
    Signal,
    above,
    all_of,
    any_of,
    below,
    flag,
    learns_poorly,
    negate,
    signal_of,
    silent,
)
from liandan.doctor.view import RunView, median
from liandan.registry import register_rule

CODE = "vanishing_gradients"
# AutoTrainer bounds G_first by 1e-4 on its small nets; an L2 norm grows with √(weights) at the same
# per-weight gradient (a 256×128 first layer has ~250× the weights of a 2×64 one: a norm ~16× larger),
# so the bound here is a decade looser — the ratio carries the test (a 5-layer sigmoid MLP on 16×16
# shapes at chance: ratio 2e-4, G_first 1.9e-4)
RATIO, FIRST, MEAN_ABS = 1e-3, 1e-3, 1e-7


def _grads(view: RunView) -> tuple[list[dict], dict[str, float], dict[str, float]]:
    """(applied probes, median gradient norm per layer, median mean |g| per layer)."""
    probes = [p for p in view.probes if p.get("applied", True)]
    grads = {k: median(v) for k, v in view.layer_series("grad", probes).items()}
    means = {k: median(v) for k, v in view.layer_series("grad_mean", probes).items()}
    return probes, grads, means


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """G_first/G_last < 1e-3 with G_first < 1e-3, or mean |g_first| < 1e-7; the run learns poorly;
    and not ReLU units killed by large updates (≥ 70 % dead, updates > 1 %: dead_relu's finding)."""
    probes, grads, means = _grads(view)
    names = list(grads)
    if len(probes) < 2 or len(names) < 2:
        return silent("fewer than two probes or weight layers")
    first, last = grads[names[0]], grads[names[-1]]
    dead = [median(v) for v in view.act_series("dead", view.last_probes(3)).values()]
    ups = [median(v) for v in view.layer_series("update", probes[1:]).values()]
    killed = all_of(above("max_dead", max(dead), 0.7, "odds", strict=False) if dead else flag("max_dead", False),
                    above("update_ratio", median(ups, 0.0), 1e-2))
    return all_of(learns_poorly(view),
                  any_of(all_of(below("first_last_ratio", first / last if last > 0 else float("nan"), RATIO),
                                below("first_grad_norm", first, FIRST)),
                         # a gradient that vanishes on its way back: the last layer still gets one (none
                         # anywhere is a cut network — every unit of a ReLU layer dead, or a zero init)
                         all_of(below("first_mean_abs_grad", means[names[0]], MEAN_ABS),
                                flag("last layer has a gradient", last > 0)), name="vanished"),
                  negate(killed, "not killed ReLUs"))


@register_rule(CODE, phase="epoch", suppresses=("dead_relu", "lr_too_low", "underfitting"))
def vanishing_gradients(view: RunView) -> Finding | None:
    """The first layers' gradients are orders of magnitude smaller than the last layer's."""
    if not signal(view):
        return None
    probes, grads, means = _grads(view)
    names = list(grads)
    first, last = grads[names[0]], grads[names[-1]]
    ratio = first / last if last > 0 else float("nan")
    step = next((p["step"] for p in probes
                 if p["layers"][names[0]]["grad"] < FIRST or p["layers"][names[0]]["grad_mean"] < MEAN_ABS),
                probes[-1]["step"])
    ev = {"first_layer_grad_norm": first, "last_layer_grad_norm": last, "first_last_ratio": ratio,
          "first_layer_mean_abs_grad": means[names[0]], "layer_grad_norms": layer_numbers(grads),
          "quality": view.quality(), "loss_drop": view.loss_drop()}
    kinds = view.act_kinds()
    n_sat = kinds.get("sigmoid", 0) + kinds.get("tanh", 0)
    sat = {k: median(v) for k, v in view.act_series("saturated", view.last_probes(3)).items()}
    causes = []
    if n_sat:
        s = sum(sat.values()) / len(sat) if sat else 0.0
        kind = "sigmoid" if kinds.get("sigmoid", 0) >= kinds.get("tanh", 0) else "tanh"
        causes.append(f"{n_sat} {kind} layers: each multiplies the gradient by its derivative "
                      f"(≤ 0.25 for sigmoid){f', and {pct(s)} of pre-activations are saturated' if s > 0.05 else ''}"
                      f" — the chain product shrinks exponentially ({ratio:.2g} from last to first layer)")
    m = view.recipe.model
    if m.init in ("normal", "uniform") and m.init_std <= 0.05:
        causes.append(f"{init_desc(view)}: weights too small, every layer shrinks the signal and its gradient")
    elif m.init in ("normal", "uniform") and m.init_std >= 0.5 and n_sat:
        causes.append(f"{init_desc(view)}: large weights push sigmoid/tanh units into saturation")
    depth = len(names)
    causes.append(f"{depth} weight layers{' without normalisation or shortcuts' if not view.meta.get('norms') else ''}:"
                  f" the gradient is a product of {depth - 1} Jacobians")
    widths, _ = hidden_widths(view)
    fx = fixes(
        fix(view, CODE, "relu_he", he_init_patch(view)) if n_sat else None,
        fix(view, CODE, "good_init", {"model.init": "kaiming_normal" if not n_sat else "xavier_uniform"}),
        fix(view, CODE, "batchnorm", {"model.norm": "batch"}),
        fix(view, CODE, "layernorm", {"model.norm": "layer"}),
        fix(view, CODE, "residual"),
        fix(view, CODE, "shallower", {"model.hidden": widths[:2]}) if len(widths) > 3 else None,
        fix(view, CODE, "adam", {"optim.name": "adam", "optim.lr": 1e-3}) if view.optimizer not in
        ("adam", "adamw") else None,
    )
    return make(view, CODE, "warning", step, ev, causes, fx)
