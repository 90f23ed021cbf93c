"""Deep key/value prefixes: prefix tuning and P-Tuning v2 (one module, a flag apart).

- Li & Liang, "Prefix-Tuning: Optimizing Continuous Prompts for Generation" (ACL 2021): every
  layer's attention gets ``n`` trainable keys and values in front of the sequence's. Training
  the prefix directly was unstable (§4.3), so it is reparametrised, ``P = MLP(P')`` with a small
  ``P' ∈ ℝ^{n×k}``: ``projection: true`` (peft's ``prefix_projection``).
- Liu et al., "P-Tuning v2: Prompt Tuning Can Be Comparable to Fine-tuning Across Scales and
  Tasks" (ACL 2022): the same deep prompts, trained directly (no reparametrisation, §3.3: it
  helps some tasks and hurts others): ``projection: false``.

For ``L`` layers with ``H`` key/value heads of width ``D`` the prefix is ``(n, L·2·H·D)``:
1,280 numbers for 10 tokens on a 2-layer LLaMA with 2 × 16 key/value widths. It reaches the model
as a ``transformers`` ``DynamicCache`` holding, per layer, keys and values ``(B, H, n, D)``:
exactly a key/value cache of length ``n`` (the forward's ``cache``; ``past_key_values`` before
transformers 5), so the real tokens' queries attend to it and the cache of a generation simply
begins with it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from liandan.adapters.prompt_tuning.virtual import VirtualTokens, cache_key


def kv_shape(hf: nn.Module) -> tuple[int, int, int]:
    """``(layers, key/value heads, head width)`` of a GPT-2, LLaMA, Qwen2 or BERT config (grouped-query aware)."""
    c = hf.config
    if c.model_type == "gpt2":
        return c.n_layer, c.n_head, c.n_embd // c.n_head
    heads = c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    return c.num_hidden_layers, getattr(c, "num_key_value_heads", None) or heads, head_dim


class Prefix(VirtualTokens):
    """Per-layer key/value prefixes, directly (P-Tuning v2) or through an MLP (prefix tuning).

    Parameters as peft's ``PrefixEncoder``: without projection ``embedding`` ``(n, L·2·H·D)``;
    with it ``embedding`` ``(n, H·D)`` and ``transform`` = Linear(H·D, hidden) → tanh →
    Linear(hidden, L·2·H·D), ``hidden`` defaulting to ``H·D`` (peft's ``encoder_hidden_size``).
    """

    def __init__(self, method: str, hf: nn.Module, n: int, shift: bool, projection: bool,
                 hidden: int | None = None) -> None:
        super().__init__(method, n, shift)
        self.layers, self.heads, self.head_dim = kv_shape(hf)
        width = self.heads * self.head_dim
        out = self.layers * 2 * width
        like = {"dtype": hf.get_input_embeddings().weight.dtype, "device": hf.get_input_embeddings().weight.device}
        # N(0, 1) start and torch's Linear init, as peft's nn.Embedding / nn.Linear
        if projection:
            self.embedding = nn.Parameter(torch.randn(n, width, **like))  # (n, H·D)
            self.transform = nn.Sequential(nn.Linear(width, hidden or width), nn.Tanh(),
                                           nn.Linear(hidden or width, out)).to(**like)
        else:
            self.embedding = nn.Parameter(torch.randn(n, out, **like))  # (n, L·2·H·D)
            self.transform = None

    def key_values(self) -> torch.Tensor:
        """The prefix as ``(L·2, H, n, D)``: layer ``l``'s keys at ``2l``, its values at ``2l + 1``."""
        p = self.transform(self.embedding) if self.transform is not None else self.embedding  # (n, L·2·H·D)
        return p.view(self.n, self.layers * 2, self.heads, self.head_dim).permute(1, 2, 0, 3)

    def inject(self, hf: nn.Module, kw: dict[str, Any], batch: int) -> None:
        from transformers import DynamicCache

        kv = self.key_values()
        key = cache_key(hf)
        past = kw.get(key)  # an empty cache the caller made (transformers' generate) is filled
        if past is None:
            past = kw[key] = DynamicCache(config=hf.config)
        for i in range(self.layers):  # per layer (B, H, n, D) twice
            past.update(kv[2 * i][None].expand(batch, -1, -1, -1), kv[2 * i + 1][None].expand(batch, -1, -1, -1), i)
