"""dead_relu: ReLU units that output 0 for every input, so they never get a gradient again.

Symptom: in some ReLU layer ≥ 70 % of the units output 0 for the whole probe batch (AutoTrainer's
γ = 0.7 on zero gradients; TheDeepChecker counts units whose activations stay ~0), median of the
last three probes. Second signal (AutoTrainer's gate): the run does not learn well — it falls short
of its ceiling (a classifier under 0.85 of the way from chance to perfect, as the rate probe's bar: a
digits MLP under Adam at 0.1 with 92 % of a layer dead ends at 0.68 accuracy); a net with many dead
units that still reaches good accuracy is not a finding.
Causes and fixes: notes (ReLU / LeakyReLU / ELU 激活函数, 参数初始化, 学习率), AutoTrainer's DR repairs.
It hides ``lr_too_high`` (both fire when big steps kill the units) except where the rate is the cause
upstream: above the range test's usable range, or — where the test has no opinion (a flat sweep) —
units that were alive at the first probe and died under the steps ``lr_too_high`` judged too large.
"""

from __future__ import annotations

from liandan.doctor.findings import Finding
from liandan.doctor.lr_opinion import rate_above_range, recorded
from liandan.doctor.rules._common import fix, fixes, init_desc, layer_numbers, lower_lr, make, pct
from liandan.doctor.rules._signal import Signal, above, all_of, below_ceiling, signal_of, silent
from liandan.doctor.view import RunView, median, typical_lr
from liandan.registry import register_rule

CODE = "dead_relu"
DEAD = 0.7


def _dead(view: RunView) -> dict[str, float]:
    return {k: median(v) for k, v in view.act_series("dead", view.last_probes(3)).items()}


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """The worst layer's dead share ≥ 0.7 and the run falls short of its ceiling (a classifier: quality
    under 0.85; other tasks: their usual bar)."""
    dead = _dead(view)
    if not dead:
        return silent("no ReLU layer probed")
    return all_of(above("dead_fraction", max(dead.values()), DEAD, "odds", strict=False), below_ceiling(view))


def killed_by_the_rate(view: RunView) -> set[str]:
    """``{"lr_too_high"}`` when the rate, not the init, killed the units: it lies above the range
    test's range, or the test gave no opinion and the worst layer was alive (< 70 % dead) at the
    first probe."""
    if rate_above_range(view):
        return {"lr_too_high"}
    if recorded(view) is not None or not view.probes:  # the test judged the rate usable, or no probes
        return set()
    dead = _dead(view)
    worst = max(dead, key=dead.get) if dead else None
    first = view.act_series("dead", view.probes[:1]).get(worst, [1.0]) if worst else [1.0]
    return {"lr_too_high"} if first[0] < DEAD else set()


@register_rule(CODE, phase="epoch", suppresses=("underfitting", "lr_too_high"),
               spares=killed_by_the_rate)  # units knocked out by the rate: it is reported beside them
def dead_relu(view: RunView) -> Finding | None:
    """Most units of a ReLU layer output zero for every input (they have stopped learning)."""
    if not signal(view):
        return None
    dead = _dead(view)
    worst = max(dead, key=dead.get)
    first = view.act_series("dead", view.probes[:1]).get(worst, [0.0])
    step = next((p["step"] for p in view.probes if p.get("acts", {}).get(worst, {}).get("dead", 0) >= DEAD),
                view.probes[-1]["step"])
    ups = [median(v) for v in view.layer_series("update", view.probes[1:]).values()]
    upd = median(ups, 0.0)
    ev = {"worst_layer": worst, "dead_fraction": dead[worst], "dead_at_start": first[0],
          "dead_layers": sum(v >= DEAD for v in dead.values()), "layer_dead": layer_numbers(dead, "{:.3f}"),
          "update_ratio": upd, "lr": view.lr, "quality": view.quality()}
    causes = []
    typ = typical_lr(view.optimizer)
    if view.lr > 3 * typ or upd > 1e-2:
        causes.append(f"learning rate {view.lr:g} with updates of {pct(upd)} of the weights per step: a large "
                      f"update pushed the units' biases/weights negative ({pct(first[0])} dead at the first "
                      f"probe, {pct(dead[worst])} in layer {worst} now)")
    m = view.recipe.model
    if m.init in ("normal", "uniform", "constant", "zeros"):
        causes.append(f"{init_desc(view)}: not scaled for ReLU (He init keeps half the units active)")
    if not view.meta.get("norms"):
        causes.append("no normalisation: nothing re-centres pre-activations that drift negative")
    causes.append(f"{pct(dead[worst])} of the units of layer {worst} output 0 for every input: their "
                  "gradient is 0 so they cannot recover")
    fx = fixes(
        fix(view, CODE, "lower_lr", {"optim.lr": lower_lr(view)}) if view.lr > typ or upd > 1e-2 else None,
        fix(view, CODE, "leaky_relu", {"model.activation": "leaky_relu"}),
        fix(view, CODE, "batchnorm", {"model.norm": "batch"}),
        fix(view, CODE, "he_init", {"model.init": "kaiming_normal"}),
        fix(view, CODE, "lower_lr", {"optim.lr": lower_lr(view)}),
        fix(view, CODE, "elu", {"model.activation": "elu"}),
    )
    return make(view, CODE, "warning", step, ev, causes, fx)
