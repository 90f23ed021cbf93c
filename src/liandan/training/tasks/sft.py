"""``sft``: supervised fine-tuning of a pre-trained causal language model on chats (Ouyang et al.
2022, the SFT stage; TRL's ``SFTTrainer`` with ``assistant_only_loss``).

The rows (:mod:`liandan.data.chat`) are next-token pairs of conversations rendered with the
model's chat template, with -100 on every token that is not an assistant's answer, so the loss
is the mean cross entropy over response tokens only: a prompt is context, never a target
(``data.train_on_prompt: true``, LLaMA-Factory's option, learns the prompts too;
the doctor's ``sft_prompt_loss`` speaks up when they then carry most of the loss).
Packed rows (``(B, 2, T)``: ids and restarting positions) go through the model as they are; it
keeps attention inside each example. Metrics over the learned tokens: loss, ``perplexity``
(``exp`` of the token-mean cross entropy) and next-token ``accuracy``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from liandan.data.text import IGNORE
from liandan.registry import register_task
from liandan.training.tasks import ExampleSource, Task
from liandan.training.tasks.language import LanguageModel, TokenTally

if TYPE_CHECKING:
    from liandan.training.run import Run


@register_task("sft", tags=("pretrained",))
class SupervisedFineTuning(LanguageModel):
    """Chat fine-tuning of a pre-trained causal LM: cross entropy on the responses' tokens only."""

    name = "sft"
    hf_head = "causal_lm"
    higher_is_better = frozenset({"accuracy"})
    # `liandan generate` and GGUF export read liandan's own tokenizers; a pre-trained model's chat
    # template and special tokens are not theirs yet, so neither is offered on these runs.
    generates_text = False
    export_output = None
    predict_instead = Task.predict_instead

    def metric_names(self) -> list[str]:
        return ["accuracy", "perplexity"]

    def tally(self, device: torch.device, light: bool = False) -> TokenTally:
        return TokenTally(device, exact=False)

    def render_examples(self, run: Run, ex: ExampleSource) -> dict[str, Any] | None:
        """Greedy answers to a few of the split's prompts, by the pre-trained model (before) and by
        this run (after), beside the expected response. Packed rows hold several examples: none."""
        from transformers import AutoModelForCausalLM

        from liandan.models.hf_pretrained import resolve
        from liandan.training.tasks.text import run_tokenizer

        x, y = ex.inputs()
        if x.dim() != 2:
            return None
        tok = run_tokenizer(run)
        base = AutoModelForCausalLM.from_pretrained(str(resolve(run.recipe.data.options["tokenizer"])))
        rows = []
        for xi, yi in zip(x, y, strict=True):
            learned = (yi != IGNORE).nonzero()
            if not len(learned):
                continue
            prompt = xi[: int(learned[0]) + 1]  # x = ids[:-1]: the prompt ends where the first target is predicted
            expected = tok.decode(yi[yi != IGNORE], skip_special_tokens=True).strip()
            got = greedy_answer(run.model.hf, prompt, tok)
            rows.append({"prompt": tok.decode(prompt, skip_special_tokens=True).strip(), "expected": expected,
                         "before": greedy_answer(base, prompt, tok), "got": got, "right": got == expected})
        return {"title": f"greedy answers to {ex.split} prompts, before and after fine-tuning", "rows": rows}


@torch.no_grad()
def greedy_answer(hf: Any, prompt: torch.Tensor, tok: Any, max_new_tokens: int = 32) -> str:
    """The greedy answer of transformers model ``hf`` to token ids ``prompt`` ``(T,)``, up to the
    end-of-turn token, decoded without special tokens and stripped."""
    was_training = hf.training
    hf.eval()
    stop = tok.eos_token_id
    out = hf.generate(prompt[None], max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop,
                      pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else stop)
    hf.train(was_training)
    return tok.decode(out[0, len(prompt):], skip_special_tokens=True).strip()
