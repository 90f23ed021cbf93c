"""sft_prompt_loss: most of the tokens carrying the loss are prompt tokens.

Symptom: a chat fine-tune with ``data.train_on_prompt: true`` (LLaMA-Factory's option; TRL's
``completion_only_loss=False``) learns every token, and on this data more than half of the training
split's learned tokens belong to the prompts (system prompt, instruction, template scaffolding) —
``prompt_label_share`` in data.json, counted when the records were rendered. The loss then mostly
measures how well the model reproduces prompts it will always be given, and the responses' share
of the gradient shrinks to the rest. The usual practice learns the responses only (Ouyang et al.
2022; TRL's and LLaMA-Factory's defaults). Not always wrong: Shi et al. 2024 ("Instruction Tuning
With Loss Over Instructions") report gains from prompt loss with long instructions, short outputs
and few examples — so this is a warning that names the trade-off, with the default as its fix.
A fact of the data, known before the first step: the share against 0.5 on the odds scale.
Fix: ``data.train_on_prompt: false`` (the default): prompt labels become -100.
Notes: SFT / RLHF — SFT: token-level CE (on the responses' tokens).
"""

from __future__ import annotations

from liandan.doctor.findings import Finding
from liandan.doctor.rules._common import fix, fixes, make, pct
from liandan.doctor.rules._signal import Signal, above, signal_of, silent
from liandan.doctor.view import RunView
from liandan.registry import register_rule

CODE = "sft_prompt_loss"
SHARE = 0.5  # "mostly": more prompt than response tokens in the loss


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """More than half of the training split's learned tokens are prompt tokens."""
    facts = view.data_info().get("extras", {})
    if "prompt_label_share" not in facts:
        return silent("no chat records")
    return above("prompt_label_share", facts["prompt_label_share"], SHARE, "odds")


@register_rule(CODE, phase="step")
def sft_prompt_loss(view: RunView) -> Finding | None:
    """The loss is carried mostly by prompt tokens (``train_on_prompt``), not by the responses."""
    if not signal(view):
        return None
    share = view.data_info()["extras"]["prompt_label_share"]
    ev = {"prompt_label_share": share, "train_on_prompt": True, "source": view.recipe.data.source}
    causes = [f"{pct(share)} of the tokens the loss is computed on are prompt tokens (data.train_on_prompt: true): "
              "the gradient mostly teaches the model to reproduce prompts it will always be given",
              f"the responses carry only {pct(1 - share)} of the loss, so the answers learn slower"]
    fx = fixes(fix(view, CODE, "responses_only", {"data.train_on_prompt": False}))
    return make(view, CODE, "warning", view.steps[0] if view.steps else None, ev, causes, fx)
