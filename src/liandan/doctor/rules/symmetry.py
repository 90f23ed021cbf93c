"""symmetry: units of a layer with identical weights — they compute the same function, get the
same gradient and never differentiate (constant or zero init).

Symptom: at initialisation ≥ 50 % of a layer's units have incoming weights equal to another
unit's up to 1e-6 (probes.identical_fraction). The second signal is persistence: still
identical after a whole epoch of updates (random init never produces this).
Notes: 对称性 ("神经网络中不同神经元之间由于参数初始化相同而导致的相似或相同的行为") and 避免陷入局部极小值
("为了打破对称性, 实践中常采用随机初始化 … Xavier/Glorot 初始化、He 初始化").
"""

from __future__ import annotations

from liandan.doctor.findings import Finding
from liandan.doctor.rules._common import fix, fixes, good_init, init_desc, layer_numbers, make, pct
from liandan.doctor.rules._signal import Signal, above, all_of, any_of, signal_of, silent
from liandan.doctor.view import RunView
from liandan.registry import register_rule

CODE = "symmetry"
SHARE = 0.5


def _shares(view: RunView) -> tuple[list[dict], dict[str, float], dict[str, float]]:
    """(records after the first epoch, identical share per layer now, and at step 0)."""
    recs = [r for r in view.identical if r.get("epoch", 0) >= 1 or r.get("step", 0) >= view.steps_per_epoch]
    start = view.identical[0]["layers"] if view.identical and view.identical[0].get("step", 0) == 0 else {}
    return recs, (recs[-1]["layers"] if recs else {}), start


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """Some layer has ≥ 50 % identical units both at init and after an epoch of training."""
    recs, last, start = _shares(view)
    if not recs:
        return silent("no identity record after the first epoch")
    # identical at init *and* still identical: weights that merely decayed to ~0 together
    # (a huge weight decay step) are not the symmetry problem
    return any_of(*(all_of(above(f"identical_share {k}", v, SHARE, "odds", strict=False),
                           above(f"identical_share_at_init {k}", start.get(k, 0.0), SHARE, "odds", strict=False))
                    for k, v in last.items()))


@register_rule(CODE, phase="epoch", suppresses=("dead_relu", "vanishing_gradients", "lr_too_low", "lr_too_high",
                                                "underfitting", "saturated_activations"))
def symmetry(view: RunView) -> Finding | None:
    """Units of a layer stay identical after training (constant/zero init never broke the symmetry)."""
    if not signal(view):
        return None
    recs, last, start = _shares(view)
    sym = {k: v for k, v in last.items() if v >= SHARE and start.get(k, 0.0) >= SHARE}
    sizes = {lay["name"]: lay["shape"][0] for lay in view.meta.get("layers", [])}
    worst = max(sym, key=sym.get)
    ev = {"layers": layer_numbers(sym, "{:.3f}"), "layer_units": {k: sizes.get(k) for k in sym},
          "identical_at_init": layer_numbers(start, "{:.3f}") if start else {}, "after_steps": recs[-1]["step"],
          "init": view.recipe.model.init}
    m = view.recipe.model
    causes = []
    if m.init in ("zeros", "constant"):
        causes.append(f"{init_desc(view)}: every unit of a layer starts with the same weights, computes the same "
                      f"output and receives the same gradient, so they stay identical ({pct(sym[worst])} of the "
                      f"{sizes.get(worst, '?')} units of layer {worst} after {recs[-1]['step']} steps)")
    else:
        causes.append(f"{pct(sym[worst])} of the units of layer {worst} have identical weights after "
                      f"{recs[-1]['step']} steps: something made them equal (a shared or constant initialisation)")
    causes.append(f"{len(sym)} layer(s) effectively have one unit each: the network's capacity collapses")
    fx = fixes(
        fix(view, CODE, "random_init", {"model.init": good_init(view)}),
        fix(view, CODE, "xavier", {"model.init": "xavier_uniform"}),
        fix(view, CODE, "default_init", {"model.init": "default"}),
    )
    return make(view, CODE, "error", recs[0]["step"], ev, causes, fx)
