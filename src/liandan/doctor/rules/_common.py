"""Helpers the rules share: fixes from the knowledge base whose patches are checked against the
recipe (a fix that the recipe cannot express keeps its sentence but no patch), learning-rate
arithmetic, and number formatting for causes."""

from __future__ import annotations

import math
from typing import Any

from liandan.doctor.findings import Finding, Fix
from liandan.doctor.knowledge import fix_text
from liandan.doctor.view import RunView, typical_lr


def valid_patch(view: RunView, patch: dict[str, Any]) -> bool:
    """Can ``patch`` be applied to this recipe (known keys, valid model options and values)?"""
    if not patch:
        return True
    cache = view.extra.setdefault("_valid", {})
    key = repr(sorted(patch.items()))
    if key not in cache:
        from liandan.errors import LiandanError
        from liandan.recipe import load_recipe

        try:
            load_recipe(view.recipe, dict(patch))
            cache[key] = True
        except (LiandanError, ValueError, TypeError):
            cache[key] = False
    return cache[key]


def changes(view: RunView, patch: dict[str, Any]) -> bool:
    """Does ``patch`` change anything in the recipe (no point re-trying the current value)?"""
    d = view.recipe.to_dict()
    for k, v in patch.items():
        node: Any = d
        for part in k.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node != v:
            return True
    return False


def fix(view: RunView, code: str, fix_id: str, patch: dict[str, Any] | None = None,
        say: str | None = None) -> Fix | None:
    """A knowledge-base fix with ``patch``; None when the patch is invalid or a no-op here.

    ``patch=None`` means a fix no recipe key expresses (e.g. "collect more data"): sentence only.
    """
    base_say, why = fix_text(code, fix_id)
    if patch is not None and (not valid_patch(view, patch) or not changes(view, patch)):
        return None
    return Fix(say or base_say, dict(patch or {}), why)


def fixes(*items: Fix | None) -> list[Fix]:
    """Drop Nones and duplicate patches, keep the order (it is the ranking)."""
    out, seen = [], set()
    for f in items:
        if f is None:
            continue
        key = repr(sorted(f.patch.items())) if f.patch else f.say
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def make(view: RunView, code: str, severity: str, step: int | None, evidence: dict[str, Any],
         causes: list[str], fx: list[Fix]) -> Finding:
    epoch = view.epoch_of(step) if step is not None else (view.epochs[-1]["epoch"] if view.epochs else None)
    return Finding(code, severity, step, epoch, evidence, [c for c in causes if c], fx)


def lower_lr(view: RunView, factor: float = 10.0) -> float:
    """A lower rate. With the LR range test's curve for this recipe (:mod:`liandan.doctor.lr_opinion`;
    the test runs here if none is known yet): a rate above its usable range goes straight to the
    range's log-middle; one inside it goes down ÷10 but not below the range. Without a curve:
    ÷10 (AutoTrainer's oscillation repair), ÷100 when the rate is more than 30× the optimizer's
    typical one (SGD at 10 would otherwise need several rounds)."""
    lr, typ = view.lr, typical_lr(view.optimizer)
    new = _round(lr / (factor * factor) if lr > 30 * typ else lr / factor)
    rng = _range(view)
    if rng is None:
        return new
    low, high = rng
    if lr > high:
        return floor_lr(math.sqrt(low * high))
    return max(new, floor_lr(low)) if lr > low else new


def raise_lr(view: RunView, factor: float = 10.0) -> float:
    """A higher rate: into the range test's usable range (its log-middle) from below it, ×10 but
    not above the range from inside it; without a curve ×10 (AutoTrainer's slow-convergence
    repair), at least the typical rate when far below it."""
    lr, typ = view.lr, typical_lr(view.optimizer)
    new = _round(max(lr * factor, typ) if lr < typ / 30 else lr * factor)
    rng = _range(view)
    if rng is None:
        return new
    low, high = rng
    if lr < low:
        return floor_lr(math.sqrt(low * high))
    return min(new, floor_lr(high)) if lr < high else new


def _range(view: RunView) -> tuple[float, float] | None:
    """(low, high) of the range test's usable range. A search lands in its log-middle, not at the
    top: the curve moves with the seed (split, init, order), and one seed's top is above another's."""
    from liandan.doctor.lr_opinion import usable_range

    rng = usable_range(view)
    if not rng or not rng.get("low") or not rng.get("high"):
        return None
    return rng["low"], rng["high"]


def floor_lr(x: float) -> float:
    """A rate rounded *down* to two significant digits (0.05462 → 0.054): a repair that lands on the
    range test's suggestion stays at or below it, inside the usable range, never a hair above."""
    if x <= 0 or not math.isfinite(x):
        return x
    e = math.floor(math.log10(x))
    return float(f"{math.floor(x / 10**e * 10 + 1e-9) / 10 * 10**e:.3g}")


def _round(x: float) -> float:
    if x <= 0 or not math.isfinite(x):
        return x
    e = math.floor(math.log10(x))
    return float(f"{round(x / 10**e, 1) * 10**e:.3g}")


def pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def g(x: float) -> str:
    return f"{x:.3g}"


def he_init_patch(view: RunView) -> dict[str, Any]:
    """ReLU + He init: the standard cure for saturating activations (He et al. 2015)."""
    return {"model.activation": "relu", "model.init": "kaiming_normal"}


def good_init(view: RunView) -> str:
    """He init for ReLU-family networks, Xavier for sigmoid/tanh (Glorot & Bengio 2010)."""
    kinds = view.act_kinds()
    sat = kinds.get("sigmoid", 0) + kinds.get("tanh", 0)
    return "xavier_uniform" if sat > kinds.get("relu", 0) else "kaiming_normal"


def layer_numbers(values: dict[str, float], fmt: str = "{:.3g}", limit: int = 12) -> dict[str, float]:
    """Per-layer evidence, at most ``limit`` layers (first, last and evenly spaced between)."""
    names = list(values)
    if len(names) > limit:
        idx = sorted({round(i * (len(names) - 1) / (limit - 1)) for i in range(limit)})
        names = [names[i] for i in idx]
    return {n: float(fmt.format(values[n])) for n in names}


def init_gain(view: RunView) -> float:
    """How many times larger the init std is than He init's √(2/fan_in), median over layers
    (1 = He-sized; only for normal/uniform init, else NaN)."""
    m = view.recipe.model
    if m.init not in ("normal", "uniform"):
        return float("nan")
    std = m.init_std if m.init == "normal" else m.init_std / math.sqrt(3)
    gains = []
    for lay in view.meta.get("layers", []):
        fan_in = math.prod(lay["shape"][1:]) if len(lay["shape"]) > 1 else 1
        gains.append(std / math.sqrt(2.0 / max(fan_in, 1)))
    gains.sort()
    return gains[len(gains) // 2] if gains else float("nan")


def init_desc(view: RunView) -> str:
    m = view.recipe.model
    if m.init == "normal":
        return f"normal(0, {m.init_std:g}) init"
    if m.init == "uniform":
        return f"uniform(±{m.init_std:g}) init"
    if m.init == "constant":
        return f"constant {m.init_value:g} init"
    return f"{m.init} init"


def hidden_widths(view: RunView) -> tuple[list[int], bool]:
    """The model's ``hidden`` option as a list of widths, and whether the model takes one int (a
    recurrent model's ``hidden: 32``) rather than a list (an MLP's ``hidden: [64, 64]``)."""
    h = view.recipe.model.options.get("hidden")
    if isinstance(h, int) and not isinstance(h, bool):
        return [h], True
    if isinstance(h, list) and h and all(isinstance(x, int) for x in h):
        return list(h), False
    return [], False


def hidden_patch(widths: list[int], scalar: bool) -> int | list[int]:
    """``model.hidden`` for ``widths`` in the form the model takes (see :func:`hidden_widths`)."""
    return widths[0] if scalar else widths
