"""Exact match of a chat model's greedy answers on held-out prompts: how an SFT run is judged
beyond its loss (the instruction-following evaluations of Ouyang et al. 2022 and of TRL's examples
reduce, on a task with one right answer, to this).

Each prompt is rendered with the tokenizer's chat template and the generation prompt, the model
answers greedily until its end-of-turn token (or ``max_new_tokens``), and the decoded answer,
stripped of surrounding whitespace, must equal the expected response exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from liandan.errors import LiandanError
from liandan.training.tasks.sft import greedy_answer


@dataclass
class ExactMatch:
    """The share of answers equal to the expected responses, and every row (prompt, expected, got)."""

    exact_match: float
    rows: list[dict[str, Any]] = field(default_factory=list)


def _causal(model: nn.Module) -> nn.Module:
    hf = getattr(model, "hf", model)  # a liandan HF model wraps the transformers one as .hf
    if not hasattr(hf, "generate"):
        raise LiandanError("exact match needs a causal language model with generate()")
    return hf


def sft_exact_match(model: nn.Module, tokenizer: Any, records: Iterable[dict[str, str]],
                    max_new_tokens: int = 32) -> ExactMatch:
    """Greedy answers of ``model`` to ``records`` (``prompt`` and ``response`` each): the exact-match
    share and the rows. ``tokenizer`` is the model's (``transformers``, with a chat template)."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise LiandanError("exact match renders prompts with the tokenizer's chat template; this tokenizer has none")
    hf = _causal(model)
    rows = []
    for r in records:
        text = tokenizer.apply_chat_template([{"role": "user", "content": r["prompt"]}], tokenize=False,
                                             add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]  # (T,)
        got = greedy_answer(hf, ids, tokenizer, max_new_tokens)
        rows.append({"prompt": r["prompt"], "expected": r["response"], "got": got,
                     "right": got == r["response"].strip()})
    return ExactMatch(sum(r["right"] for r in rows) / max(len(rows), 1), rows)
