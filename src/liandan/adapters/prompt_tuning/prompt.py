"""Prompt tuning — Lester, Al-Rfou & Constant, "The Power of Scale for Parameter-Efficient Prompt
Tuning" (EMNLP 2021).

A soft prompt ``P ∈ ℝ^{n×C}`` is prepended to the input embeddings, ``[P; E(x)]``, ``(B, n + T, C)``;
only ``P`` trains (``n·C`` numbers: 640 for 10 tokens at width 64). §3.2: initialising ``P`` from
embeddings of real vocabulary tokens beats random initialisation, which is why ``init: vocab``
is the default.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from liandan.adapters.prompt_tuning.virtual import VirtualTokens
from liandan.errors import LiandanError


class SoftPrompt(VirtualTokens):
    """``n`` trainable input embeddings before the real tokens' (peft's ``PromptEmbedding``)."""

    prepends = True

    def __init__(self, hf: nn.Module, n: int, shift: bool, init: str = "vocab",
                 init_ids: list[int] | None = None) -> None:
        super().__init__("prompt_tuning", n, shift)
        table = hf.get_input_embeddings().weight  # (V, C)
        if init_ids:
            bad = [i for i in init_ids if not 0 <= i < table.shape[0]]
            if bad:
                raise LiandanError(f"adapter.init_ids: {bad[0]} is not a token id (vocabulary 0..{table.shape[0] - 1})")
            ids = torch.tensor((init_ids * -(-n // len(init_ids)))[:n])  # repeated to n, as peft's TEXT init
        elif init == "vocab":  # Lester et al.'s "sampled vocab"
            ids = torch.randint(0, table.shape[0], (n,))
        elif init == "random":  # at the scale of the token embeddings (peft's N(0, 1) dwarfs a small model's)
            ids = None
        else:
            raise LiandanError(f"adapter.init: use vocab or random, not {init!r}")
        with torch.no_grad():
            start = table[ids.to(table.device)] if ids is not None else torch.randn_like(table[:n]) * table.std()
        self.embedding = nn.Parameter(start.detach().clone())  # (n, C)

    def inject(self, hf: nn.Module, kw: dict[str, Any], batch: int) -> None:
        ids, embeds = kw.pop("input_ids", None), kw.pop("inputs_embeds", None)
        if embeds is None:
            embeds = hf.get_input_embeddings()(ids)  # (B, T, C)
        prompt = self.embedding.to(embeds.dtype)[None].expand(batch, -1, -1)  # (B, n, C)
        kw["inputs_embeds"] = torch.cat([prompt, embeds], 1)  # (B, n + T, C)
        pos = kw["position_ids"]
        virtual = torch.arange(self.n, device=pos.device)[None].expand(pos.shape[0], -1)
        kw["position_ids"] = torch.cat([virtual, pos], 1)  # (1 or B, n + T)
        if kw.get("cache_position") is not None:  # (transformers 4.x) the prompt fills the cache's first n slots
            kw["cache_position"] = torch.cat([torch.arange(self.n, device=pos.device), kw["cache_position"]])
        if not self.shift and kw.get("attention_mask") is None:
            # positions 0..n-1, 0..T-1 read as two packed sequences to transformers' mask builder
            # (it would hide the prompt from the text): an explicit mask turns that guess off
            kw["attention_mask"] = torch.ones(batch, self.n + embeds.shape[1], dtype=torch.long, device=embeds.device)
        if kw.get("token_type_ids") is not None:  # BERT's segments: the prompt is in segment 0 (as peft)
            types = kw["token_type_ids"]
            kw["token_type_ids"] = torch.cat([types.new_zeros(types.shape[0], self.n), types], 1)
        labels = kw.get("labels")
        if labels is not None and labels.dim() == 2 and labels.shape[1] == embeds.shape[1]:
            # per-token labels (a causal LM's, a token classifier's): the virtual positions predict nothing;
            # a sequence classifier's (B,) stay as they are
            kw["labels"] = torch.cat([labels.new_full((batch, self.n), -100), labels], 1)
