"""Deep key/value prefixes in every layer: prefix tuning (Li & Liang 2021, through an MLP) and
P-Tuning v2 (Liu et al. 2022, trained directly) — one implementation, :class:`Prefix`."""

from __future__ import annotations

from torch import nn

from liandan.adapters.inject import Adapter
from liandan.adapters.prefix_tuning.prefix import Prefix, kv_shape
from liandan.adapters.prompt_tuning.virtual import Positions, declares_cache, hf_model, shifts
from liandan.errors import LiandanError
from liandan.registry import register_adapter

__all__ = ["Prefix", "kv_shape", "p_tuning_v2", "prefix_adapter", "prefix_tuning"]


def prefix_adapter(method: str, n: int, projection: bool, hidden: int | None, positions: Positions) -> Adapter:
    """The :class:`Adapter` of a deep-prefix method (both registered names build through this)."""
    if hidden is not None and (hidden < 1 or not projection):
        raise LiandanError("adapter.hidden: the MLP's width, ≥ 1, only with projection: true")

    def install(model: nn.Module) -> nn.Module:
        hf = hf_model(model, method)
        if not declares_cache(hf):
            raise LiandanError(f"adapter {method}: {type(hf).__name__} takes no key/value cache (cache / "
                               "past_key_values), which carries the prefix; use prompt_tuning or a LoRA-family method")
        return Prefix(method, hf, n, shifts(hf, positions), projection, hidden).install(model, hf)

    return Adapter(method, install=install, options={"num_virtual_tokens": n, "projection": projection,
                                                     "hidden": hidden, "positions": positions})


@register_adapter("prefix_tuning", tags=("prompt",))
def prefix_tuning(num_virtual_tokens: int = 8, projection: bool = True, hidden: int | None = None,
                  positions: Positions = "auto") -> Adapter:
    """Trainable keys and values before every layer's, through an MLP (Li & Liang 2021).

    ``projection: true`` computes the prefix as MLP(P') (tanh, ``hidden`` wide; default the
    key/value width); ``false`` trains it directly, which is P-Tuning v2. Decoder-only LMs (GPT-2,
    LLaMA, Qwen2) and encoders that take a key/value cache (BERT).

    Args:
        num_virtual_tokens: n trainable key/value positions before every layer's
        projection: compute the prefix through a tanh MLP (Li & Liang 2021); false: train it directly
            (P-Tuning v2)
        hidden: width of the MLP (only with projection); None: the key/value width
        positions: positions of the real tokens: shift puts them after the virtual ones (peft), keep leaves
            them at 0..T−1; auto keeps them for learned positions (GPT-2, BERT) and shifts for rotary ones
            (LLaMA, Qwen2)
    """
    return prefix_adapter("prefix_tuning", num_virtual_tokens, projection, hidden, positions)


@register_adapter("p_tuning_v2", tags=("prompt",))
def p_tuning_v2(num_virtual_tokens: int = 8, positions: Positions = "auto") -> Adapter:
    """Deep prompts: trainable keys and values before every layer's, n·L·2·H·D (Liu et al. 2022).

    Args:
        num_virtual_tokens: n trainable key/value positions before every layer's
        positions: positions of the real tokens: shift puts them after the virtual ones (peft), keep leaves
            them at 0..T−1; auto keeps them for learned positions (GPT-2, BERT) and shifts for rotary ones
            (LLaMA, Qwen2)
    """
    return prefix_adapter("p_tuning_v2", num_virtual_tokens, False, None, positions)
