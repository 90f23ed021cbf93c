"""Exact match of greedy chat answers: prompts go through the chat template with the generation
prompt, answers are cut at the prompt's end, decoded without special tokens and compared stripped."""

from __future__ import annotations

import pytest
import torch

from liandan.errors import LiandanError
from liandan.llm.sft_eval import sft_exact_match
from tests.models import hf_tiny


class Answers(torch.nn.Module):
    """A stand-in causal LM whose greedy answer to each rendered prompt is scripted."""

    def __init__(self, tok, script: dict[str, str]) -> None:
        super().__init__()
        self.tok, self.script, self.seen = tok, script, []

    def generate(self, ids, max_new_tokens, do_sample, eos_token_id, pad_token_id):
        text = self.tok.decode(ids[0])
        self.seen.append(text)
        prompt = next(p for p in self.script if p in text)
        answer = self.tok(self.script[prompt], add_special_tokens=False)["input_ids"][:max_new_tokens]
        return torch.cat([ids, torch.tensor([answer + [eos_token_id]])], dim=1)


def test_exact_match_counts_the_right_answers() -> None:
    tok = hf_tiny.tokenizer("llama")
    records = [{"prompt": "tell me about cat dog", "response": "dog cat"},
               {"prompt": "tell me about red fish", "response": "fish red"},
               {"prompt": "tell me about sun rain", "response": "rain sun"}]
    model = Answers(tok, {"cat dog": "dog cat", "red fish": "red fish", "sun rain": "rain sun"})
    res = sft_exact_match(model, tok, records)
    assert res.exact_match == pytest.approx(2 / 3)
    assert [r["right"] for r in res.rows] == [True, False, True]
    assert res.rows[1]["got"] == "red fish"  # the answer only: no prompt, no end-of-turn token
    assert all(s.rstrip().endswith("[assistant]") for s in model.seen)  # the template's generation prompt


def test_a_tokenizer_without_a_chat_template_is_one_line() -> None:
    tok = hf_tiny.tokenizer("gpt2")  # a base model's tokenizer: no template
    with pytest.raises(LiandanError, match="chat template"):
        sft_exact_match(Answers(tok, {}), tok, [{"prompt": "a", "response": "b"}])
