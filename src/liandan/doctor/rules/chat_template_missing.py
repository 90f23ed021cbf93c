"""chat_template_missing: chat records rendered without a chat template.

Symptom: the run's records were chats (an ``sft`` records source, or liandan's toy
``instructions``) and the tokenizer had no ``chat_template``, so each record became the raw prompt
followed by the response (TRL's prompt-completion format): no role markers, no end-of-turn token
between the turns the model could learn to stop at, and at inference a chat client's
``apply_chat_template`` produces text the model never saw. A fact of the data (the source records
it in data.json), known before the first step: ``flag`` margin.
Fix: give the data a template (``data.chat_template``: Jinja text or a file; RUN/hf/ keeps it, so
``AutoTokenizer`` renders the same chats), or fine-tune from an instruct model whose tokenizer has one.
Notes: SFT (问答 -> 用户反馈: the chat format is what the user's questions arrive in).
"""

from __future__ import annotations

from liandan.data.chat import PLAIN_TEMPLATE
from liandan.doctor.findings import Finding
from liandan.doctor.rules._common import fix, fixes, make
from liandan.doctor.rules._signal import Signal, flag, signal_of, silent
from liandan.doctor.view import RunView
from liandan.registry import register_rule

CODE = "chat_template_missing"


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """The data's ``chat_template`` fact is false (a chat source rendered records without one)."""
    facts = view.data_info().get("extras", {})
    if "chat_template" not in facts:
        return silent("no chat records")
    return flag("no_chat_template", not facts["chat_template"])


@register_rule(CODE, phase="step")
def chat_template_missing(view: RunView) -> Finding | None:
    """Chat records were rendered as raw prompt + response: the tokenizer has no chat template."""
    if not signal(view):
        return None
    d = view.recipe.data
    where = d.options.get("tokenizer") or d.source
    ev = {"source": d.source, "tokenizer": where, "chat_template": False}
    causes = [f"the tokenizer of {where} has no chat_template, so every record was rendered as the prompt's "
              "tokens followed by the response's: no role markers and no end of turn between them",
              "a chat client (apply_chat_template, a serving stack) will format prompts in a way this model never "
              "saw in training"]
    fx = fixes(
        fix(view, CODE, "template", {"data.chat_template": PLAIN_TEMPLATE}),
        fix(view, CODE, "template", {"data.chat_template": True}),  # the toy instructions source: a switch
        fix(view, CODE, "instruct_model"),
    )
    return make(view, CODE, "warning", view.steps[0] if view.steps else None, ev, causes, fx)
