"""Put adapter layers in place of a model's target layers, freeze the rest; merge them back.

An :class:`Adapter` (what a registered builder returns) names its targets and wraps one layer;
:func:`apply_adapter` does the model surgery every method shares. Targets match as in peft: a
module named ``t`` or ending in ``.t``. Without targets, Hugging Face models take peft's default
for their architecture (``TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING``: the attention
query and value projections the LoRA paper adapts, §7.1); other models every Linear but the last
(the output head stays as trained). ``targets: all-linear`` is peft's shorthand: every Linear and
GPT-2 ``Conv1D`` but the output head (q/k/v/o and the MLP projections of LLaMA and Qwen2,
``c_attn``/``c_proj``/``c_fc`` of GPT-2, ``query``/``key``/``value``/``dense`` of BERT).

The classification head of a Hugging Face ``*ForSequenceClassification`` /
``*ForTokenClassification`` model (``classifier`` or ``score``) is freshly initialised for the new
labels, so it trains with the adapter, whole: peft's ``modules_to_save`` for task types
``SEQ_CLS`` / ``TOKEN_CLS``. It is saved with the adapter and kept by a merge.

Model-level methods (prompt tuning, prefix tuning: virtual tokens, not layer updates) give an
``install`` instead of ``wrap``: :func:`apply_adapter` freezes the model and hands it over whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from liandan.adapters.base import adaptable
from liandan.errors import LiandanError

# peft 0.21's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING (the same for VeRA), for the
# architectures liandan is tested on and their kin: Hu et al. 2022 §7.1, adapting W_q and W_v is
# the best use of a fixed budget.
_QV = ["q_proj", "v_proj"]
DEFAULT_TARGETS = {
    "gpt2": ["c_attn"], "gpt_neox": ["query_key_value"], "bloom": ["query_key_value"], "falcon": ["query_key_value"],
    **dict.fromkeys(("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "gptj",
                     "opt", "bart"), _QV),
    "phi": ["q_proj", "v_proj", "fc1", "fc2"],
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "electra"), ["query", "value"]),
    "deberta-v2": ["query_proj", "value_proj"], "t5": ["q", "v"], "mt5": ["q", "v"],
}
ALL_LINEAR = "all-linear"  # peft's INCLUDE_LINEAR_LAYERS_SHORTHAND
HEAD_NAMES = ("score", "classifier")  # peft's SEQ_CLS_HEAD_NAMES: the classification heads it trains too
Targets = list[str] | Literal["all-linear"] | None  # the builders' ``targets`` option
ADAPTER_MARK = "_liandan_adapter"
MODEL_ADAPTER_MARK = "_liandan_model_adapter"  # on the module a model-level method adds (its method name)


@dataclass
class Adapter:
    method: str
    targets: Targets = None
    wrap: Callable[[str, nn.Module], nn.Module] | None = None  # (module name, layer) -> adapter layer
    prepare: Callable[[nn.Module, list[tuple[str, nn.Module]]], None] | None = None  # before wrapping
    finish: Callable[[nn.Module, list[nn.Module]], None] | None = None  # after wrapping
    options: dict = field(default_factory=dict)
    install: Callable[[nn.Module], nn.Module] | None = None  # model-level methods: (frozen model) -> model

    def apply(self, model: nn.Module) -> nn.Module:
        return apply_adapter(model, self)


def hf_root(model: nn.Module) -> tuple[nn.Module, str]:
    """The Hugging Face model inside ``model`` (liandan's wrappers keep it as ``.hf``; else the
    model itself) and its name prefix inside ``model``: what peft would wrap."""
    hf = getattr(model, "hf", None)
    return (hf, "hf.") if isinstance(hf, nn.Module) else (model, "")


def head_names(model: nn.Module) -> list[str]:
    """Module paths (in ``model``) of the classification head of a Hugging Face
    ``*ForSequenceClassification`` / ``*ForTokenClassification`` model: trained with the adapter,
    as peft's ``modules_to_save`` for SEQ_CLS / TOKEN_CLS. Empty for other models."""
    root, prefix = hf_root(model)
    if not type(root).__name__.endswith(("ForSequenceClassification", "ForTokenClassification")):
        return []
    return [prefix + n for n in HEAD_NAMES if isinstance(getattr(root, n, None), nn.Module)][:1]


def _output_head(model: nn.Module) -> set[str]:
    """Paths of the layers ``all-linear`` leaves alone: the output embeddings (the LM head) or the
    classification head, as peft's ``_maybe_include_all_linear_layers``."""
    root, prefix = hf_root(model)
    out = root.get_output_embeddings() if callable(getattr(root, "get_output_embeddings", None)) else None
    names = {prefix + n for n, m in root.named_modules() if out is not None and m is out}
    heads = head_names(model)
    return names | {n for h in heads for n, _ in model.named_modules() if n == h or n.startswith(h + ".")}


def default_targets(model: nn.Module) -> list[str]:
    for m in model.modules():
        kind = getattr(getattr(m, "config", None), "model_type", None)
        if kind in DEFAULT_TARGETS:
            return DEFAULT_TARGETS[kind]
    names = [n for n, m in model.named_modules() if n and adaptable(m)]
    if len(names) < 2:
        raise LiandanError("adapter: the model has no Linear layers to adapt besides its output head")
    return names[:-1]


def resolve_targets(model: nn.Module, targets: Targets) -> list[str]:
    """The target names: as given, peft's default for the architecture (None), or every Linear /
    Conv1D but the output head (``all-linear``, full module paths)."""
    if targets is None or targets == []:
        return default_targets(model)
    if isinstance(targets, str):
        if targets.lower() != ALL_LINEAR:
            raise LiandanError(f"adapter.targets: a list of layer names or {ALL_LINEAR!r}, not {targets!r}")
        skip = _output_head(model)
        names = [n for n, m in model.named_modules() if n and adaptable(m) and n not in skip]
        if not skip and not hasattr(hf_root(model)[0], "config"):
            names = names[:-1]  # a plain torch model: its last Linear is the output head
        if not names:
            raise LiandanError("adapter.targets: all-linear found no Linear layers besides the output head")
        return names
    return list(targets)


def _matches(name: str, targets: list[str]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def apply_adapter(model: nn.Module, adapter: Adapter) -> nn.Module:
    """Freeze ``model`` and replace each target layer by ``adapter.wrap(name, layer)`` in place
    (model-level methods: freeze it and ``adapter.install`` it)."""
    heads = head_names(model)
    if adapter.install is not None:
        for p in model.parameters():
            p.requires_grad_(False)
        model = adapter.install(model)
        _train_heads(model, heads)
        return model
    targets = resolve_targets(model, adapter.targets)
    inside_head = tuple(h + "." for h in heads)
    found = [(n, m) for n, m in model.named_modules()
             if n and _matches(n, targets) and n not in heads and not n.startswith(inside_head)]
    bad = [n for n, m in found if not adaptable(m)]
    if bad:
        raise LiandanError(f"adapter.targets: {bad[0]!r} is a {type(dict(found)[bad[0]]).__name__}; "
                           "adapters wrap Linear (or Hugging Face Conv1D) layers")
    if not found:
        layers = [n for n, m in model.named_modules() if n and adaptable(m)]
        raise LiandanError(f"adapter.targets: none of {targets} names a layer of the model; "
                           f"its Linear layers: {', '.join(layers[:12])}{' ...' if len(layers) > 12 else ''}")
    for p in model.parameters():
        p.requires_grad_(False)
    if adapter.prepare:
        adapter.prepare(model, found)
    wrapped = []
    for name, layer in found:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        new = adapter.wrap(name, layer)
        setattr(new, ADAPTER_MARK, adapter.method)
        setattr(parent, attr, new)
        wrapped.append(new)
    if adapter.finish:
        adapter.finish(model, wrapped)
    _train_heads(model, heads)
    return model


def _train_heads(model: nn.Module, heads: list[str]) -> None:
    for h in heads:
        for p in model.get_submodule(h).parameters():
            p.requires_grad_(True)


def adapter_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if hasattr(m, ADAPTER_MARK)]


def model_adapters(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules model-level methods (prompt, prefix) added to ``model``."""
    return [(n, m) for n, m in model.named_modules() if hasattr(m, MODEL_ADAPTER_MARK)]


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the trainable adapter tensors (what a fine-tune adds; kilobytes, not the base model)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


@torch.no_grad()
def merge_adapter(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base layer and put the base layer back (peft's
    ``merge_and_unload``): the same function, no extra latency, a plain model. Prompt and prefix
    methods add virtual tokens, not a weight update: they cannot merge (a LiandanError)."""
    for _, m in model_adapters(model):
        method = getattr(m, MODEL_ADAPTER_MARK)
        raise LiandanError(f"merge: {method} adds virtual tokens (a soft prompt or key/value prefix), not a weight "
                           "update: there is nothing to merge; keep the model with its adapter")
    for name, layer in adapter_layers(model):
        layer.merge()
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, layer.base)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def merged_copy(model: nn.Module) -> nn.Module:
    """``model`` itself when it has no adapter, else a copy with every adapter merged: the plain
    architecture that exporters and other libraries know."""
    if model_adapters(model):
        raise LiandanError("this run adds virtual tokens (a prompt or prefix adapter): they are inputs, not weights, "
                           "so there is no merged model to export; LoRA-family adapters merge")
    if not adapter_layers(model):
        return model
    import copy

    merged = merge_adapter(copy.deepcopy(model))
    for name, m in list(merged.named_modules()):  # a base its merge kept quantised (QA-LoRA's INT4): float for export
        if callable(getattr(m, "to_float", None)):
            parent_name, _, attr = name.rpartition(".")
            setattr(merged.get_submodule(parent_name) if parent_name else merged, attr, m.to_float())
    return merged

