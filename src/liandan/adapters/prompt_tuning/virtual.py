"""Virtual tokens in front of every sequence: what prompt tuning and prefix tuning share.

Both methods leave the weights alone and change what the frozen model attends to: ``n`` trainable
positions before the ``T`` real tokens. Prompt tuning (Lester et al. 2021) feeds them as input
embeddings, ``(B, n + T, C)``; prefix tuning (Li & Liang 2021) and P-Tuning v2 (Liu et al. 2022)
give every layer's attention ``n`` extra keys and values, a ``past_key_values`` of length ``n``.

A :class:`VirtualTokens` module hooks the Hugging Face model (``model.hf`` of liandan's ``gpt`` and
``bert``, or the model itself: a decoder-only causal LM such as GPT-2, LLaMA or Qwen2, or an
encoder such as BERT with any head) instead of wrapping it, so ``HFTokenModel.forward``/``decode_step``, the
checkpoint keys of the base and ``save_pretrained`` stay as they are. Per call the pre-hook:

- prepends ``n`` ones to a padding mask ``(B, T)`` -> ``(B, n + T)`` (virtual tokens are never padding);
- sets the real tokens' positions: ``shift`` puts them after the virtual tokens (``n .. n + T - 1``,
  as peft and both papers); ``keep`` leaves them at ``0 .. T - 1`` (soft-prompt tokens take
  ``0 .. n - 1`` too). ``auto`` (default) keeps them for learned absolute positions (GPT-2, BERT: a
  base trained at its full context has no row ``≥ T`` in its position table, and never trained the
  rows past its data) and shifts for rotary ones (LLaMA, Qwen2: no table to run out of; peft's
  function);
- injects the virtual tokens on the first call of a sequence only (no cache, or an empty one):
  later decoding steps find them in the key/value cache, whose length is then ``n +`` the real
  tokens seen. The cache is a ``transformers`` ``Cache`` (``DynamicCache``), taken by the keyword
  the model's forward declares (:func:`~liandan.models.hf_text.cache_keyword`: ``cache`` in
  transformers 5, ``past_key_values`` in 4.x) whichever of the two the caller used, so a 5.x
  model never sees both (it would ignore the prefix in ``past_key_values``) nor the deprecated one;
- shifts a ``cache_position`` (transformers 4.x's ``generate`` passes the cache slots of the real
  tokens, counted without the virtual ones) by ``n``, so the causal mask lets every real token see
  the whole prefix.

The forward hook drops the virtual positions from per-token logits, so outputs keep the input's
shape ``(B, T, V)``; a sequence classifier's ``(B, K)`` is left alone (BERT's pooler reads the first
position, the first virtual token under prompt tuning, as in peft).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Literal

import torch
from torch import nn

from liandan.adapters.inject import MODEL_ADAPTER_MARK, model_adapters
from liandan.errors import LiandanError
from liandan.models.hf_text import CACHE_KEYWORDS, cache_keyword

Positions = Literal["auto", "shift", "keep"]


def hf_model(model: nn.Module, method: str) -> nn.Module:
    """The Hugging Face model inside ``model`` (liandan's wrappers keep it as ``.hf``): a decoder-only
    causal LM or an encoder (BERT), with its input embeddings; not an encoder-decoder."""
    hf = getattr(model, "hf", model)
    config = getattr(hf, "config", None)
    if getattr(config, "model_type", None) is None or not callable(getattr(hf, "get_input_embeddings", None)):
        raise LiandanError(f"adapter {method}: needs a Hugging Face language model or encoder (model 'gpt', "
                           f"'bert' or 'hf'), not a {type(model).__name__}")
    if getattr(config, "is_encoder_decoder", False):
        raise LiandanError(f"adapter {method}: supports decoder-only and encoder-only models, not the "
                           f"encoder-decoder {config.model_type!r}")
    if present := model_adapters(model):
        raise LiandanError(f"adapter {method}: the model already has {getattr(present[0][1], MODEL_ADAPTER_MARK)}")
    return hf


def rotary(hf: nn.Module) -> bool:
    """Rotary positions (LLaMA, Qwen2: a ``rope_parameters`` / ``rope_theta`` config), not a learned
    absolute table (GPT-2, BERT)."""
    c = hf.config
    return any(getattr(c, k, None) is not None for k in ("rope_parameters", "rope_theta", "rotary_dim"))


def shifts(hf: nn.Module, positions: Positions) -> bool:
    """Whether the real tokens' positions start after the ``n`` virtual ones (see the module doc)."""
    if positions not in ("auto", "shift", "keep"):
        raise LiandanError(f"adapter.positions: use auto, shift or keep, not {positions!r}")
    return positions == "shift" or (positions == "auto" and rotary(hf))


@functools.cache
def _declared_cache(cls: type) -> str | None:
    params = inspect.signature(cls.forward).parameters
    return next((k for k in CACHE_KEYWORDS if k in params), None)


def declares_cache(hf: nn.Module) -> bool:
    """Whether ``hf`` (or its backbone) takes a key/value cache, the carrier of a prefix."""
    backbone = getattr(hf, "base_model", hf)
    return bool(_declared_cache(type(hf)) or (isinstance(backbone, nn.Module) and _declared_cache(type(backbone))))


def cache_key(hf: nn.Module) -> str:
    """The keyword that takes the key/value cache: the one ``hf``'s forward declares, else the one
    its backbone's does (``BertForSequenceClassification`` passes ``**kwargs`` on to ``BertModel``,
    whose ``cache`` it never names), else :func:`~liandan.models.hf_text.cache_keyword`'s guess."""
    backbone = getattr(hf, "base_model", hf)
    return (_declared_cache(type(hf)) or (_declared_cache(type(backbone)) if isinstance(backbone, nn.Module) else None)
            or cache_keyword(hf))


def take_cache(hf: nn.Module, kw: dict[str, Any]) -> Any:
    """The key/value cache of a call's keyword arguments, under whichever name the caller gave it,
    moved to the one ``hf``'s forward declares (the other name dropped); ``None`` if there is none."""
    key = cache_key(hf)
    given = [kw.pop(k) for k in (key, *(k for k in CACHE_KEYWORDS if k != key)) if k in kw]
    past = next((p for p in given if p is not None), None)
    if given:
        kw[key] = past
    return past


class VirtualTokens(nn.Module):
    """``n`` virtual positions before every sequence of a hooked Hugging Face causal LM.

    Subclasses implement :meth:`inject` (put the virtual tokens into the call's keyword
    arguments); ``prepends`` says whether they are inputs whose outputs must be dropped.
    """

    prepends = False

    def __init__(self, method: str, n: int, shift: bool) -> None:
        super().__init__()
        if n < 1:
            raise LiandanError(f"adapter.num_virtual_tokens must be ≥ 1, got {n}")
        self.n, self.shift = n, shift
        self._strip = 0  # this call prepended inputs to its T real ones: keep only the last T logits
        setattr(self, MODEL_ADAPTER_MARK, method)

    def install(self, model: nn.Module, hf: nn.Module) -> nn.Module:
        """Hook ``hf`` and keep this module as ``model.prompt_encoder`` (peft's name): its weights
        are the model's only trainable ones and live beside, not inside, the base's."""
        # bound methods: a deepcopy of the model copies the hooks onto the copied module
        hf.register_forward_pre_hook(self._before, with_kwargs=True)
        hf.register_forward_hook(self._after, with_kwargs=True)
        model.add_module("prompt_encoder", self)
        return model

    def inject(self, hf: nn.Module, kw: dict[str, Any], batch: int) -> None:
        raise NotImplementedError

    def _before(self, hf: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        kw = dict(kwargs)
        if args:  # model(ids): the first positional parameter of a causal LM is input_ids
            if len(args) > 1:
                raise TypeError("with virtual tokens, pass the model's inputs by keyword")
            kw["input_ids"] = args[0]
        x = kw["input_ids"] if kw.get("input_ids") is not None else kw["inputs_embeds"]
        batch, length = x.shape[0], x.shape[1]
        past = take_cache(hf, kw)
        cached = past.get_seq_length() if past is not None else 0
        first = cached == 0
        seen = 0 if first else cached - self.n  # real tokens the cache already holds
        pos = kw.get("position_ids")
        if pos is None:
            pos = torch.arange(seen, seen + length, device=x.device)[None]  # (1, T)
        kw["position_ids"] = pos + (self.n if self.shift else 0)
        mask = kw.get("attention_mask")
        if mask is not None:  # (B, seen + T) -> (B, n + seen + T)
            kw["attention_mask"] = torch.cat([mask.new_ones(batch, self.n), mask], 1)
        if kw.get("cache_position") is not None:  # (transformers 4.x) the real tokens' slots: after the n virtual
            kw["cache_position"] = kw["cache_position"] + self.n
        self._strip = 0
        if first:
            self.inject(hf, kw, batch)
            self._strip = length if self.prepends else 0
        return (), kw

    def _after(self, hf: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
        keep, self._strip = self._strip, 0
        logits = getattr(output, "logits", None)
        # per-token logits only (B, K of a classifier stay); transformers' logits_to_keep may give fewer
        if keep and logits is not None and logits.dim() == 3 and logits.shape[1] > keep:
            output.logits = logits[:, -keep:]  # (B, n + T, V) -> (B, T, V)
        return output

    def extra_repr(self) -> str:
        return f"{getattr(self, MODEL_ADAPTER_MARK)}, n={self.n}, positions={'shift' if self.shift else 'keep'}"
