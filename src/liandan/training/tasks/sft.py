"""``sft``: supervised fine-tuning of a pre-trained causal language model on chats (Ouyang et al.
2022, the SFT stage; TRL's ``SFTTrainer`` with ``assistant_only_loss``).

The rows (:mod:`liandan.data.chat`) are next-token pairs of conversations rendered with the
model's chat template, with -100 on every token that is not an assistant's answer, so the loss
is the mean cross entropy over response tokens only: a prompt is context, never a target.
Packed rows (``(B, 2, T)``: ids and restarting positions) go through the model as they are; it
keeps attention inside each example. Metrics over the learned tokens: loss, ``perplexity``
(``exp`` of the token-mean cross entropy) and next-token ``accuracy``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

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
        """The hook for generated answers to held-out prompts (``rows`` of prompt, expected, got,
        right); none yet: the loss and perplexity are the run's evaluation."""
        return None
