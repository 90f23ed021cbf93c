"""Prompt tuning (Lester et al. 2021): ``n`` trainable virtual-token embeddings before the input's."""

from __future__ import annotations

from typing import Literal

from torch import nn

from liandan.adapters.inject import Adapter
from liandan.adapters.prompt_tuning.prompt import SoftPrompt
from liandan.adapters.prompt_tuning.virtual import Positions, VirtualTokens, hf_model, shifts
from liandan.registry import register_adapter

__all__ = ["SoftPrompt", "VirtualTokens", "hf_model", "prompt_tuning", "shifts"]


@register_adapter("prompt_tuning", tags=("prompt",))
def prompt_tuning(num_virtual_tokens: int = 8, init: Literal["vocab", "random"] = "vocab",
                  init_ids: list[int] | None = None, positions: Positions = "auto") -> Adapter:
    """Soft prompt: n trainable input embeddings before the tokens', n·C parameters (Lester et al. 2021).

    ``init``: ``vocab`` copies the embeddings of n random vocabulary tokens, ``random`` draws them at
    the embeddings' scale; ``init_ids`` names the tokens (repeated to n). ``positions``: see
    :mod:`liandan.adapters.prompt_tuning.virtual` (``shift`` is peft's). Decoder-only LMs (GPT-2, LLaMA,
    Qwen2) and encoders (BERT).

    Args:
        num_virtual_tokens: n trainable input embeddings put before every sequence
        init: vocab: start from the embeddings of n vocabulary tokens (Lester et al. 2021); random: draw them
            at the embeddings' scale
        init_ids: token ids to start from with init vocab (repeated to n); None: random tokens
        positions: positions of the real tokens: shift puts them after the virtual ones (peft), keep leaves
            them at 0..T−1; auto keeps them for learned positions (GPT-2, BERT) and shifts for rotary ones
            (LLaMA, Qwen2)
    """

    def install(model: nn.Module) -> nn.Module:
        hf = hf_model(model, "prompt_tuning")
        prompt = SoftPrompt(hf, num_virtual_tokens, shifts(hf, positions), init, init_ids)
        return prompt.install(model, hf)

    return Adapter("prompt_tuning", install=install,
                   options={"num_virtual_tokens": num_virtual_tokens, "init": init, "positions": positions})
