"""Language-modelling tasks: ``lm`` (next-token prediction, Radford et al. 2019) and ``mlm``
(masked tokens, Devlin et al. 2018).

Both take token ids ``x`` ``(B, T)`` and targets ``y`` ``(B, T)`` with -100 where nothing is
learned (padding, prompts, unmasked tokens), and a model returning logits ``(B, T, V)``.
Metrics, over the learned positions only:

- ``accuracy``: the share of learned tokens whose argmax is right (for mlm: masked-token accuracy);
- ``perplexity``: ``exp`` of the mean token cross entropy (token-weighted, not batch-weighted);
- ``exact_match`` (lm): the share of sequences with *every* learned token right. With the loss
  on an answer only (``arith``), this is exactly greedy decoding's exact match: greedy decoding
  reproduces the answer iff each answer token is the argmax given the right prefix, which is
  what teacher forcing scores. It costs no generation (``liandan generate --exact-match`` checks
  it by actually generating).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from liandan.data.text import IGNORE, mask_tokens
from liandan.registry import register_task
from liandan.training.tasks import ExampleSource, Task

if TYPE_CHECKING:
    from liandan.training.run import Run


def token_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross entropy over the positions with ``y != -100``; logits ``(B, T, V)``, y ``(B, T)``."""
    return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=IGNORE)


class TokenTally:
    """Token-weighted sums on the device (no host sync per batch)."""

    def __init__(self, device: torch.device, exact: bool) -> None:
        self.device, self.exact = device, exact
        self.reset()

    def reset(self) -> None:
        z = lambda: torch.zeros((), dtype=torch.float64, device=self.device)  # noqa: E731
        self.loss_sum, self.tokens, self.correct, self.seq_ok, self.seqs = z(), z(), z(), z(), z()

    @torch.no_grad()
    def update(self, out: torch.Tensor | tuple[torch.Tensor, torch.Tensor], y: torch.Tensor,
               loss: torch.Tensor) -> None:
        if isinstance(out, tuple):  # (logits, the targets actually used): mlm's re-drawn masks
            out, y = out
        learned = y != IGNORE  # (B, T)
        n = learned.sum()
        self.loss_sum += loss.detach().double() * n  # the loss is the mean over these n tokens
        self.tokens += n
        right = (out.argmax(-1) == y) & learned  # (B, T)
        self.correct += right.sum()
        if self.exact:
            has = learned.any(1)  # (B,) sequences with something to learn
            self.seq_ok += ((right == learned).all(1) & has).sum()
            self.seqs += has.sum()

    def compute(self) -> dict[str, float]:
        n = max(float(self.tokens), 1.0)
        loss = float(self.loss_sum) / n
        out = {"loss": loss, "accuracy": float(self.correct) / n, "perplexity": math.exp(min(loss, 700.0))}
        if self.exact:
            out["exact_match"] = float(self.seq_ok) / max(float(self.seqs), 1.0)
        return out


@register_task("lm")
class LanguageModel(Task):
    """Next-token prediction: cross entropy of logits[t] against token t+1 (targets pre-shifted by the source)."""

    name = "lm"
    default_loss = None
    higher_is_better = frozenset({"accuracy", "exact_match"})
    generates_text = True
    own_loss = "cross_entropy"
    export_output = "logits"  # (batch, seq, vocab), no key/value cache
    predict_instead = "liandan generate {run} --prompt TEXT"
    # chat sources: the judge scores the responses (the default loss's tokens), never the prompts
    judge_data = {"train_on_prompt": False}

    def metric_names(self) -> list[str]:
        return ["accuracy", "perplexity", "exact_match"]

    def forward(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = net(x)  # (B, T, V)
        return token_loss(logits, y), logits

    def tally(self, device: torch.device, light: bool = False) -> TokenTally:
        return TokenTally(device, exact=True)

    def render_examples(self, run: Run, ex: ExampleSource) -> dict[str, Any] | None:
        """A table of the split's prompts with the expected and the greedy completion."""
        if not self.info.tokenizer:
            return None
        return {"title": f"greedy completions of {ex.split} prompts", "rows": ex.completions()}


@register_task("mlm")
class MaskedLanguageModel(LanguageModel):
    """Masked tokens (BERT): cross entropy at the masked positions; masks re-drawn every training batch."""

    name = "mlm"
    higher_is_better = frozenset({"accuracy"})
    generates_text = False  # bidirectional: it fills masks, it does not continue a prompt
    predict_instead = Task.predict_instead

    def metric_names(self) -> list[str]:
        return ["accuracy", "perplexity"]

    def forward(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if net.training and self.info.mask_prob > 0:
            # Dynamic masking (RoBERTa): the source's fixed masks keep val/test comparable across
            # epochs; training sees fresh ones. The originals are the targets where masked and the
            # inputs elsewhere. The global RNG draws them, so a resumed run draws the same masks.
            ids = torch.where(y != IGNORE, y, x)
            x, y = mask_tokens(ids, self.info.mask_prob, self.info.vocab_size)
            logits = net(x)  # (B, T, V)
            return token_loss(logits, y), (logits, y)  # the tally must score the masks actually drawn
        logits = net(x)  # (B, T, V)
        return token_loss(logits, y), logits

    def tally(self, device: torch.device, light: bool = False) -> TokenTally:
        return TokenTally(device, exact=False)

    def render_examples(self, run: Run, ex: ExampleSource) -> dict[str, Any] | None:
        return None  # no completions to show: masked tokens are scored by the metrics
