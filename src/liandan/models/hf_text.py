"""Language models built from Hugging Face ``transformers`` configs (never downloaded weights).

- ``gpt``: a decoder-only causal LM. ``style: gpt2`` is GPT-2 (Radford et al. 2019, "Language
  models are unsupervised multitask learners": learned positions, pre-LayerNorm, GELU MLP, tied
  input/output embeddings); ``style: llama`` is LLaMA (Touvron et al. 2023: RMSNorm, rotary
  positions, SwiGLU MLP). GPT-2 small (``size: base``, vocab 50,257, 1,024 positions) has
  124,439,808 parameters.
- ``bert``: a bidirectional encoder (Devlin et al. 2018, "BERT: pre-training of deep
  bidirectional transformers") with the masked-LM head for task ``mlm`` or a pooled
  classification head for ``classify``. BERT-base's encoder (``BertModel`` with its pooler,
  vocab 30,522, 512 positions) has 109,482,240 parameters.

``size: tiny`` is a CPU-sized model (2 layers, 128 wide, 4 heads); ``layers``/``dim``/``heads``
override either size. ``vocab_size``, ``max_len`` and ``task`` are inferred from the data.
``transformers`` is imported inside the builders, so importing liandan stays fast. The wrapped
model is ``.hf``; ``save_pretrained`` writes the Hugging Face format (PEFT, TRL, ONNX export).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Literal

import torch
from torch import nn

from liandan.errors import LiandanError
from liandan.registry import MODELS, register_model

# (layers, dim, heads) of each size
SIZES = {"tiny": (2, 128, 4), "base": (12, 768, 12)}
GPT2_BASE_PARAMS = 124_439_808
BERT_BASE_PARAMS = 109_482_240  # BertModel incl. pooler; the registry's ref_params
CACHE_KEYWORDS = ("cache", "past_key_values")  # transformers 5's name of the key/value cache, then 4's


@functools.cache
def _forward_parameters(cls: type) -> frozenset[str]:
    return frozenset(inspect.signature(cls.forward).parameters)


def cache_keyword(hf: nn.Module) -> str:
    """The keyword by which ``hf``'s forward takes its key/value cache, and the output field that
    returns it: ``cache`` in transformers 5 (where ``past_key_values`` is a deprecated alias that
    is ignored when both are given), ``past_key_values`` in 4.x. Read from the signature, not
    the version."""
    params = _forward_parameters(type(hf))
    return next((k for k in CACHE_KEYWORDS if k in params), CACHE_KEYWORDS[-1])


class HFTokenModel(nn.Module):
    """Token ids ``(B, T)`` -> logits: ``(B, T, V)`` for language models, ``(B, K)`` for classifiers.

    The attention mask comes from the padding id (right padding): a causal model never lets a
    real token see the padding after it, so only encoders need it.
    """

    def __init__(self, hf: nn.Module, pad_id: int = 0, needs_mask: bool = False) -> None:
        super().__init__()
        self.hf, self.pad_id, self.needs_mask = hf, pad_id, needs_mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = (x != self.pad_id).long() if self.needs_mask else None  # (B, T), 1 = real token
        return self.hf(input_ids=x, attention_mask=mask, use_cache=False).logits

    def decode_step(self, ids: torch.Tensor, past: Any = None) -> tuple[torch.Tensor, Any]:
        """Incremental decoding with the key/value cache: ``ids`` are the tokens the cache has not
        seen yet (the whole prompt first, then one token per step); returns the last position's
        logits ``(B, V)`` and the cache. Each step attends over the cache instead of re-reading
        the context, so a step costs O(T) rather than O(T²)."""
        key = cache_keyword(self.hf)
        out = self.hf(input_ids=ids, use_cache=True, **{key: past})
        return out.logits[:, -1, :], getattr(out, key)

    @property
    def max_len(self) -> int:
        c = self.hf.config
        return int(getattr(c, "n_positions", None) or c.max_position_embeddings)

    def save_pretrained(self, path: Any) -> None:
        from transformers.utils import logging

        logging.disable_progress_bar()  # no progress bar in a run's log
        self.hf.save_pretrained(str(path))


def init_std(size: str, width: int) -> float:
    """Weight init std: the published 0.02 at ``base``; 1/√width for the CPU sizes.

    0.02 suits width 768 (a linear map's gain 0.02·√768 ≈ 0.55); at width 64 the gain is 0.16,
    so each attention or MLP branch starts at a few percent of the residual stream's scale and
    learns slowly (and a BLIP decoder barely hears its image: shape accuracy 0.11). 1/√width keeps
    the gain near one: grammar-bert 0.888 → 0.905, arith-gpt exact match 0.970 → 0.991.
    """
    return 0.02 if size == "base" else width**-0.5


BERT_HEADS = {"mlm": "BertForMaskedLM", "classify": "BertForSequenceClassification"}  # transformers' classes


def _served(model: str, task: str, hint: str = "") -> None:
    """Refuse a task the model's registry entry does not list (its ``tasks``): the builder's
    ``task`` option is inferred from the data, and e.g. a causal model cannot see the right
    context a masked or classified token needs."""
    tasks = MODELS.get(model).extra["tasks"]
    if task in tasks:
        return
    raise LiandanError(f"model {model!r} serves task{'s' if len(tasks) > 1 else ''} {' and '.join(tasks)}, "
                       f"not {task!r}{hint}")


def _dims(size: str, layers: int | None, dim: int | None, heads: int | None) -> tuple[int, int, int]:
    if size not in SIZES:
        raise LiandanError(f"model.size: unknown size {size!r}; available: {', '.join(SIZES)}")
    n, d, h = SIZES[size]
    n, d, h = layers or n, dim or d, heads or h
    if d % h:
        raise LiandanError(f"model.dim={d} is not divisible by heads={h}")
    return n, d, h


@register_model("gpt", input_kind="tokens", tasks=("lm",), ref_input=(128,), ref_params=GPT2_BASE_PARAMS,
                ref_options={"size": "base"}, paper="Radford et al. 2019")
def gpt(
    vocab_size: int = 50257,
    max_len: int = 1024,
    task: str = "lm",
    size: Literal["tiny", "base"] = "tiny",
    style: Literal["gpt2", "llama"] = "gpt2",
    layers: int | None = None,
    dim: int | None = None,
    heads: int | None = None,
    dropout: float | None = None,
) -> nn.Module:
    """Decoder-only causal LM, GPT-2 or LLaMA style (transformers); task lm. Base: GPT-2 small, 124M.

    Args:
        task: must be lm (a causal model never sees the right context); inferred from the data
        size: tiny: CPU-sized, 2 layers, 128 wide, 4 heads; base: GPT-2 small, 12 layers, 768 wide, 12 heads
        style: gpt2: learned positions, LayerNorm, GELU MLP (Radford et al. 2019); llama: RMSNorm, rotary
            positions, SwiGLU MLP (Touvron et al. 2023)
        layers: transformer layers; None: the size's
        dim: hidden width (a multiple of heads); None: the size's
        heads: attention heads; None: the size's
        dropout: dropout on embeddings, residual branches and attention; None: 0.1 at base, 0 at tiny
    """
    _served("gpt", task, " (bert serves mlm and classify)")
    n, d, h = _dims(size, layers, dim, heads)
    p = dropout if dropout is not None else (0.1 if size == "base" else 0.0)  # tiny models on small data: none
    if style == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(vocab_size=vocab_size, n_positions=max_len, n_embd=d, n_layer=n, n_head=h,
                         resid_pdrop=p, embd_pdrop=p, attn_pdrop=p, bos_token_id=1, eos_token_id=2,
                         initializer_range=init_std(size, d))
        return HFTokenModel(GPT2LMHeadModel(cfg))
    from transformers import LlamaConfig, LlamaForCausalLM

    # SwiGLU's hidden width 8/3·d keeps the MLP's parameters at the 4·d GELU MLP's (rounded to 32)
    hidden = 32 * -(-int(8 * d / 3) // 32)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=d, intermediate_size=hidden, num_hidden_layers=n,
                      num_attention_heads=h, num_key_value_heads=h, max_position_embeddings=max_len,
                      attention_dropout=p, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
                      initializer_range=init_std(size, d))
    return HFTokenModel(LlamaForCausalLM(cfg))


@register_model("bert", input_kind="tokens", tasks=("mlm", "classify"), ref_input=(128,), ref_params=BERT_BASE_PARAMS,
                ref_options={"size": "base", "task": "classify", "num_classes": 2}, ref_module="hf.bert",
                paper="Devlin et al. 2018")
def bert(
    vocab_size: int = 30522,
    max_len: int = 512,
    task: str = "mlm",
    num_classes: int = 2,
    size: Literal["tiny", "base"] = "tiny",
    layers: int | None = None,
    dim: int | None = None,
    heads: int | None = None,
    dropout: float | None = None,
) -> nn.Module:
    """Bidirectional encoder (transformers BERT): masked LM for task mlm, [CLS] classifier for classify.

    Args:
        task: mlm: the masked-LM head; classify: a classifier on the pooled [CLS] state; inferred from the
            data
        num_classes: classes of the classify head (unused for mlm); inferred from the data
        size: tiny: CPU-sized, 2 layers, 128 wide, 4 heads; base: BERT-base, 12 layers, 768 wide, 12 heads
        layers: transformer layers; None: the size's
        dim: hidden width (a multiple of heads); None: the size's
        heads: attention heads; None: the size's
        dropout: dropout on hidden states and attention probabilities; None: 0.1 at base, 0 at tiny
    """
    n, d, h = _dims(size, layers, dim, heads)
    p = dropout if dropout is not None else (0.1 if size == "base" else 0.0)
    from transformers import BertConfig

    cfg = BertConfig(vocab_size=vocab_size, hidden_size=d, num_hidden_layers=n, num_attention_heads=h,
                     intermediate_size=4 * d, max_position_embeddings=max_len, hidden_dropout_prob=p,
                     attention_probs_dropout_prob=p, pad_token_id=0, num_labels=num_classes,
                     initializer_range=init_std(size, d))
    _served("bert", task)
    import transformers

    return HFTokenModel(getattr(transformers, BERT_HEADS[task])(cfg), needs_mask=True)
