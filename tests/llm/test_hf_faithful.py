"""RUN/hf/ behaves under plain transformers as the run does under liandan: AutoTokenizer adds the
<bos> the model was trained after, and greedy ``generate`` answers what ``liandan.generate`` does."""

from __future__ import annotations

import pytest
import torch

import liandan

PROMPTS = ["56+23=", "12+34=", "7+8=", "99+1="]


def _hf_greedy(tok, model, prompt: str, max_new_tokens: int) -> str:
    enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def test_transformers_generation_matches_liandan(base) -> None:
    transformers = pytest.importorskip("transformers")
    from liandan.data.tokenize import BOS, EOS

    hf = base.dir / "hf"
    tok = transformers.AutoTokenizer.from_pretrained(hf)
    model = transformers.AutoModelForCausalLM.from_pretrained(hf).eval()
    assert tok("1+2=")["input_ids"][0] == BOS  # the run's sequences start with <bos>
    assert model.generation_config.eos_token_id == EOS
    for prompt in PROMPTS:
        ours = liandan.generate(base.dir, prompt, max_new_tokens=6, temperature=0)["completion"]
        assert _hf_greedy(tok, model, prompt, 6) == ours, prompt
