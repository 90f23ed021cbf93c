"""Adapters in peft's on-disk format: ``adapter_config.json`` + ``adapter_model.safetensors``.

:func:`save_peft_adapter` writes what ``PeftModel.save_pretrained`` writes (peft 0.21), so
``peft.PeftModel.from_pretrained(base, DIR)`` gives liandan's logits;
:func:`~liandan.adapters.peft_load.load_peft_adapter` reads such a directory (written by peft or
by liandan) into liandan's own adapter modules. peft itself is not needed for either.

The format, as peft's ``get_peft_model_state_dict`` / ``set_peft_model_state_dict`` write and
read it (adapter name ``default`` removed from the keys; ``<path>`` is the module's name inside
the Hugging Face model, ``model.layers.0.self_attn.q_proj``):

=================  ==================================================  ===================================
peft_type          adapter_model.safetensors                           adapter_config.json (main fields)
=================  ==================================================  ===================================
``LORA``           ``base_model.model.<path>.lora_A.weight`` (r, in),  r, lora_alpha, use_rslora,
                   ``….lora_B.weight`` (out, r)                        lora_dropout, target_modules,
                                                                       fan_in_fan_out (GPT-2's Conv1D),
                                                                       rank_pattern, alpha_pattern
``VERA``           ``base_model.model.<path>.vera_lambda_b`` (out),    r, projection_prng_key,
                   ``….vera_lambda_d`` (r); the shared projections     save_projection, vera_dropout,
                   ``base_model.vera_A`` (r, max in),                  target_modules, fan_in_fan_out
                   ``base_model.vera_B`` (max out, r)
``PROMPT_TUNING``  ``prompt_embeddings`` (n, hidden)                   num_virtual_tokens, token_dim,
                                                                       num_layers, num_attention_heads
``PREFIX_TUNING``  ``prompt_embeddings`` (n, L·2·H·D): the prefix      prefix_projection,
                   itself, already through the MLP when                encoder_hidden_size, token_dim
                   ``prefix_projection`` (peft saves                   (H·D), num_attention_heads (H, the
                   ``get_prompt_embedding_to_save``, not the MLP)      key/value heads), num_layers
=================  ==================================================  ===================================

A classifier's head (``classifier`` / ``score`` of a ``*ForSequenceClassification`` model: trained
with the adapter, see :mod:`liandan.adapters.inject`) travels as peft's ``modules_to_save``: the
config names it and the file holds its tensors whole, ``base_model.model.<path>.weight`` (LoRA,
VeRA) or ``base_model.<path>.weight`` (prompt methods), as peft 0.21 writes them.

liandan ↔ peft: ``lora`` (``rslora``) ↔ LORA (``use_rslora``); ``qlora`` → LORA (peft's QLoRA is a
LoRA adapter over a bitsandbytes 4-bit base: the file is LoRA's; peft on a float base differs by
the quantisation error); ``vera`` ↔ VERA (liandan's ``seed`` draws the projections as peft's
``projection_prng_key`` does); ``prompt_tuning`` ↔ PROMPT_TUNING; ``prefix_tuning`` and
``p_tuning_v2`` ↔ PREFIX_TUNING with ``prefix_projection`` true and false. A prefix read back has
no MLP (peft's file holds none): it loads as the trained prefix itself. peft always puts the real
tokens' positions after the virtual ones, so prompt methods export only with ``positions: shift``
(the default for LLaMA; GPT-2's default ``auto`` keeps them) and load with it. peft has no DyLoRA,
and its QA-LoRA (``use_qalora``) exists only on GPTQ layers, with another pooling scale and INT4
format: those two are refused.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from liandan.adapters.base import is_conv1d
from liandan.adapters.inject import (
    ADAPTER_MARK,
    MODEL_ADAPTER_MARK,
    adapter_layers,
    head_names,
    hf_root,
    model_adapters,
)
from liandan.errors import LiandanError

CONFIG_NAME, WEIGHTS_NAME, LEGACY_WEIGHTS_NAME = "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"
PREFIX = "base_model.model."  # peft's key prefix of the wrapped model's modules (LoRA, VeRA)
PROMPT_PREFIX = "base_model."  # prompt-learning models wrap the base model directly
PROMPT_TYPES = ("PROMPT_TUNING", "PREFIX_TUNING")
# peft's task_type from the Hugging Face class's name (its PeftModelFor... class)
TASKS = {"ForCausalLM": "CAUSAL_LM", "LMHeadModel": "CAUSAL_LM", "ForSequenceClassification": "SEQ_CLS",
         "ForTokenClassification": "TOKEN_CLS", "ForQuestionAnswering": "QUESTION_ANS"}
NOT_IN_PEFT = {
    "dylora": "peft has no DyLoRA (its nested-rank training has no peft_type); merge it, or train lora",
    "qalora": "peft's QA-LoRA (LoraConfig use_qalora) exists only on GPTQ-quantised layers, with another pooling "
              "scale and INT4 format than liandan's group-wise min-max base; merge it, or train lora / qlora",
}


_hf_root = hf_root  # the module peft wraps (liandan's wrappers keep it as .hf) and its name prefix


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else float(x)


def _dropout(layer: nn.Module) -> float:
    return float(getattr(layer.dropout, "p", 0.0))


def _targets(root: nn.Module, paths: list[str]) -> list[str]:
    """peft's ``target_modules``: the last names (``q_proj``) when they pick exactly ``paths`` (peft
    matches a module named t or ending in .t, as liandan), else the full paths."""
    short = sorted({p.rsplit(".", 1)[-1] for p in paths})
    hit = {n for n, _ in root.named_modules() if n and n.rsplit(".", 1)[-1] in short}  # peft wraps each
    return short if hit == set(paths) else sorted(paths)


def _conv1d(layers: list[tuple[str, nn.Module]]) -> bool:
    """peft's ``fan_in_fan_out``: the targets are GPT-2's Conv1D (kept as ``conv1d`` by a quantised base)."""
    return any(is_conv1d(m.base) or getattr(m.base, "conv1d", False) for _, m in layers)


def _task(root: nn.Module) -> str | None:
    name = type(root).__name__
    return next((t for suffix, t in TASKS.items() if name.endswith(suffix)), None)


def saved_heads(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The classification heads that trained with the adapter (peft's ``modules_to_save``), with
    their paths inside the Hugging Face model."""
    prefix = hf_root(model)[1]
    heads = [(h.removeprefix(prefix), model.get_submodule(h)) for h in head_names(model)]
    return [(p, m) for p, m in heads if any(q.requires_grad for q in m.parameters())]


def _method(model: nn.Module) -> str:
    methods = {getattr(m, ADAPTER_MARK) for _, m in adapter_layers(model)}
    methods |= {getattr(m, MODEL_ADAPTER_MARK) for _, m in model_adapters(model)}
    if not methods:
        raise LiandanError("save_peft_adapter: the model has no adapter (apply one with adapter: {name: ...})")
    if len(methods) > 1:
        raise LiandanError(f"save_peft_adapter: the model has several adapters ({', '.join(sorted(methods))}); "
                           "a peft directory holds one")
    return methods.pop()


def save_peft_adapter(model: nn.Module, directory: str | Path, base_model_name_or_path: str | None = None) -> Path:
    """Write ``model``'s adapter as peft's ``adapter_config.json`` + ``adapter_model.safetensors``
    in ``directory`` (created), loadable by ``peft.PeftModel.from_pretrained(base, directory)``.

    ``base_model_name_or_path`` goes into the config (default: the Hugging Face config's
    ``_name_or_path``, empty for models built from a config: null). Methods peft lacks
    (``dylora``, ``qalora``), GPT-2-style prompt methods kept at positions ``0..T−1`` and unknown
    methods raise a :class:`LiandanError`. Returns the directory.
    """
    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper
    model = model.module if type(model).__name__ in ("DistributedDataParallel", "DataParallel") else model
    method = _method(model)
    root, _ = _hf_root(model)
    if method in NOT_IN_PEFT:
        raise LiandanError(f"save_peft_adapter: {method}: {NOT_IN_PEFT[method]}")
    export = {"lora": _save_lora, "qlora": _save_lora, "vera": _save_vera, "prompt_tuning": _save_prompt,
              "prefix_tuning": _save_prefix, "p_tuning_v2": _save_prefix}.get(method)
    if export is None:
        raise LiandanError(f"save_peft_adapter: peft has no format for adapter {method!r}; it writes "
                           "lora, qlora, vera, prompt_tuning, prefix_tuning and p_tuning_v2")
    config, tensors = export(model, root, method)
    key_prefix = PROMPT_PREFIX if config["peft_type"] in PROMPT_TYPES else PREFIX
    heads = saved_heads(model)
    for path, head in heads:  # whole modules, as peft's ModulesToSaveWrapper saves them
        tensors |= {f"{key_prefix}{path}.{k}": v for k, v in head.state_dict().items()}
    config["modules_to_save"] = sorted(p.rsplit(".", 1)[-1] for p, _ in heads) or None
    name = base_model_name_or_path or getattr(getattr(root, "config", None), "_name_or_path", None) or None
    config = {"base_model_name_or_path": name, "revision": None, "inference_mode": True, "auto_mapping": None,
              **config}
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(out / WEIGHTS_NAME),
              metadata={"format": "pt"})  # as peft's save_pretrained
    return out


def _layers(model: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    return sorted((n.removeprefix(prefix), m) for n, m in adapter_layers(model))


def _save_lora(model: nn.Module, root: nn.Module, method: str) -> tuple[dict, dict]:
    layers = _layers(model, _hf_root(model)[1])
    tensors = {}
    for path, m in layers:
        tensors[f"{PREFIX}{path}.lora_A.weight"] = m.lora_A  # (r, in), for Linear and Conv1D alike
        tensors[f"{PREFIX}{path}.lora_B.weight"] = m.lora_B  # (out, r)
    r = Counter(m.r for _, m in layers).most_common(1)[0][0]
    alpha = Counter(m.alpha for _, m in layers).most_common(1)[0][0]
    config = {"peft_type": "LORA", "task_type": _task(root), "r": r, "lora_alpha": _num(alpha),
              "use_rslora": bool(getattr(layers[0][1], "rslora", False)), "lora_dropout": _dropout(layers[0][1]),
              "target_modules": _targets(root, [p for p, _ in layers]),
              "fan_in_fan_out": _conv1d(layers), "rank_pattern": {p: m.r for p, m in layers if m.r != r},
              "alpha_pattern": {p: _num(m.alpha) for p, m in layers if m.alpha != alpha},
              "bias": "none", "init_lora_weights": True, "use_dora": False, "modules_to_save": None,
              "layers_to_transform": None, "layers_pattern": None}
    return config, tensors


def _save_vera(model: nn.Module, root: nn.Module, method: str) -> tuple[dict, dict]:
    layers = _layers(model, _hf_root(model)[1])
    a = max((m.vera_A for _, m in layers), key=lambda t: t.shape[1])  # (r, max in): the whole shared A
    b = max((m.vera_B for _, m in layers), key=lambda t: t.shape[0])  # (max out, r)
    tensors = {"base_model.vera_A": a, "base_model.vera_B": b}
    for path, m in layers:
        if not (torch.equal(m.vera_A, a[:, : m.vera_A.shape[1]]) and torch.equal(m.vera_B, b[: m.vera_B.shape[0]])):
            raise LiandanError(f"save_peft_adapter: vera layer {path!r} does not use the shared projections; "
                               "peft's VeRA shares one A and B across layers")
        tensors[f"{PREFIX}{path}.vera_lambda_b"] = m.lambda_b  # (out,)
        tensors[f"{PREFIX}{path}.vera_lambda_d"] = m.lambda_d  # (r,)
    config = {"peft_type": "VERA", "task_type": _task(root), "r": a.shape[0],
              "target_modules": _targets(root, [p for p, _ in layers]),
              "projection_prng_key": 0, "save_projection": True,  # the projections travel in the file
              "vera_dropout": _dropout(layers[0][1]), "d_initial": 0.1,
              "fan_in_fan_out": _conv1d(layers), "bias": "none", "init_weights": True,
              "modules_to_save": None, "layers_to_transform": None, "layers_pattern": None}
    return config, tensors


def _virtual(model: nn.Module, method: str) -> nn.Module:
    module = model_adapters(model)[0][1]
    if not module.shift:
        raise LiandanError(f"save_peft_adapter: {method} was trained with positions keep (the real tokens at "
                           "0..T-1, GPT-2's default); peft always puts them after the virtual tokens, so it would "
                           "give other logits: train with positions: shift to export to peft")
    return module


def _prompt_config(peft_type: str, task: str | None, n: int, token_dim: int, heads: int, layers: int) -> dict:
    return {"peft_type": peft_type, "task_type": task or "FEATURE_EXTRACTION", "num_virtual_tokens": n,
            "token_dim": token_dim, "num_transformer_submodules": 1, "num_attention_heads": heads,
            "num_layers": layers, "modules_to_save": None}


def _save_prompt(model: nn.Module, root: nn.Module, method: str) -> tuple[dict, dict]:
    prompt = _virtual(model, method)
    c = root.config
    heads = getattr(c, "num_attention_heads", None) or c.n_head
    layers = getattr(c, "num_hidden_layers", None) or c.n_layer
    config = _prompt_config("PROMPT_TUNING", _task(root), prompt.n, prompt.embedding.shape[1], heads, layers)
    config.update(prompt_tuning_init="RANDOM", prompt_tuning_init_text=None, tokenizer_name_or_path=None,
                  tokenizer_kwargs=None)
    return config, {"prompt_embeddings": prompt.embedding}  # (n, hidden)


@torch.no_grad()
def _save_prefix(model: nn.Module, root: nn.Module, method: str) -> tuple[dict, dict]:
    prefix = _virtual(model, method)
    width = prefix.heads * prefix.head_dim
    flat = prefix.transform(prefix.embedding) if prefix.transform is not None else prefix.embedding  # (n, L·2·H·D)
    hidden = prefix.transform[0].out_features if prefix.transform is not None else width
    config = _prompt_config("PREFIX_TUNING", _task(root), prefix.n, width, prefix.heads, prefix.layers)
    config.update(prefix_projection=method == "prefix_tuning", encoder_hidden_size=hidden, init_weights=None)
    return config, {"prompt_embeddings": flat}
