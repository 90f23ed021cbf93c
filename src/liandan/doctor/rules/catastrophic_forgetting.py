"""catastrophic_forgetting: a fine-tune that destroyed its base run's own skill.

Symptom (McCloskey & Cohen 1989; Kirkpatrick et al. 2017, EWC): the fine-tuned model, evaluated on
the base run's held-out data with the base's task, lost more than half of the base's above-chance
skill — (base − tuned) / (base − chance) > 0.5 on the base's strictest metric with real skill
(exact match, accuracy, F1 or R²: :mod:`liandan.doctor.forgetting` measures it at the run's end).
Only for a fine-tune (``model.from_run``) whose data takes the base's inputs and outputs, and that
learned its own data: one that failed there too (a rate that wrecked the model) is not forgetting.
Fixes: LoRA "learns less and forgets less" than full fine-tuning (Biderman et al. 2024), a lower
rate or fewer steps move the weights less far from the base's, and replaying some of the base's
data keeps its task in the loss (Robins 1995; the common cure in instruction tuning).
Notes: 微调 (部分或全部参数: an adapter trains a part), 大模型微调方法 (Lora), and "KL 约束防止模型漂移"
(the drift RLHF's KL term prevents is what this measures).
"""

from __future__ import annotations

from liandan.doctor.findings import Finding
from liandan.doctor.forgetting import MIN_SKILL, lost_share, measured
from liandan.doctor.rules._common import fix, fixes, g, make, pct
from liandan.doctor.rules._signal import Signal, above, all_of, learns_poorly, negate, signal_of, silent
from liandan.doctor.view import RunView
from liandan.registry import register_rule

CODE = "catastrophic_forgetting"
LOST = 0.5  # share of the base's above-chance skill


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """The fine-tune learned its own data (not below underfitting's quality bar) and lost > 50 % of
    the base's above-chance skill on the base's held-out data (the base had ≥ 20 % of the way from
    chance to perfect to lose)."""
    rec = measured(view)
    if rec is None:
        return silent("no fine-tune of a comparable base run")
    base_q = (rec["base"] - rec["chance"]) / (1 - rec["chance"])
    # a fine-tune that failed on its own data too (a rate that wrecked the model) is not forgetting: the
    # rules of that failure speak for it
    return all_of(negate(learns_poorly(view), "fine_tune_learns"),
                  above("base_skill", base_q, MIN_SKILL, "odds", strict=False),
                  above("skill_lost", lost_share(rec), LOST, "odds"))


def _round(x: float) -> float:
    return float(f"{x:.2g}")


@register_rule(CODE, phase="end", modes=("train",))
def catastrophic_forgetting(view: RunView) -> Finding | None:
    """The fine-tuned model lost most of its base run's skill on the base's own held-out data."""
    if not signal(view):
        return None
    rec = measured(view)
    lost = lost_share(rec)
    r, a, t = view.recipe, view.recipe.adapter, view.recipe.train
    ev = {"metric": rec["metric"], "base": rec["base"], "tuned": rec["tuned"], "chance": rec["chance"],
          "lost_share": lost, "base_loss": rec["base_loss"], "tuned_loss": rec["tuned_loss"],
          "base_run": rec["base_run"], "split": rec["split"], "samples": rec["samples"],
          "adapter": a.name if a else None, "lr": r.optim.lr, "epochs": t.epochs}
    causes = [f"on {rec['samples']} {rec['split']} samples of the base run's data its {rec['metric']} fell from "
              f"{g(rec['base'])} to {g(rec['tuned'])} (chance {g(rec['chance'])}): {pct(lost)} of the base's skill "
              "is gone — the new data's loss pulled the shared weights away from what the base's task needs"]
    if a is None:
        causes.append("full fine-tuning: every weight of the base model moved")
    else:
        causes.append(f"even through the {a.name} adapter the update was large enough to override the base's "
                      "behaviour on its own inputs")
    causes.append(f"{t.epochs} epochs at lr {g(r.optim.lr)} on the new data alone: nothing in the loss asks the "
                  "model to keep the base's task")
    rank = a.options.get("r") if a else None
    fx = fixes(
        fix(view, CODE, "adapter", {"adapter": {"name": "lora", "r": 8, "alpha": 16}}) if a is None else None,
        fix(view, CODE, "lower_lr", {"optim.lr": _round(r.optim.lr / 10)}),
        fix(view, CODE, "fewer_epochs", {"train.epochs": max(1, t.epochs // 3)}) if t.epochs > 1 else None,
        fix(view, CODE, "smaller_rank", {"adapter.r": max(1, rank // 4)}) if isinstance(rank, int) and rank > 1
        else None,
        fix(view, CODE, "replay"),
        fix(view, CODE, "intended"),
    )
    return make(view, CODE, "warning", view.epochs[-1].get("step") if view.epochs else None, ev, causes, fx)
