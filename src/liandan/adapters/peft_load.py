"""Read a peft adapter directory into liandan's own adapter modules (the format: :mod:`liandan.adapters.peft_format`).

peft's ``set_peft_model_state_dict`` puts ``base_model.model.<path>.<tensor>`` back into its own
layers; here the same keys name the liandan layers to create (exactly those paths, so a peft
``target_modules`` regex or ``layers_to_transform`` needs no re-implementation) and the tensors
are copied into them. ``rank_pattern`` shows in the tensors' shapes; ``alpha_pattern`` is matched
as peft's ``get_pattern_key`` does. ``modules_to_save`` (a classifier's head, whole) is copied into
the model's own module, which then trains with the adapter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liandan.adapters.base import adaptable, dims
from liandan.adapters.inject import apply_adapter
from liandan.adapters.peft_format import (
    CONFIG_NAME,
    LEGACY_WEIGHTS_NAME,
    PREFIX,
    PROMPT_PREFIX,
    PROMPT_TYPES,
    WEIGHTS_NAME,
    _hf_root,
    _layers,
)
from liandan.errors import LiandanError
from liandan.registry import ADAPTERS

# liandan methods each peft_type loads into (the first is the default)
LOADS_AS = {"LORA": ("lora", "qlora"), "VERA": ("vera",), "PROMPT_TUNING": ("prompt_tuning",),
            "PREFIX_TUNING": ("prefix_tuning", "p_tuning_v2")}
# peft LoRA options a plain LoRA cannot honour: (field, the value that means "off")
LORA_OFF = (("use_dora", False), ("bias", "none"), ("lora_bias", False), ("trainable_token_indices", None),
            ("layer_replication", None), ("use_qalora", False),
            ("alora_invocation_tokens", None), ("target_parameters", None))
# the task types whose models liandan adapts (peft's PeftModelFor... classes; None: the plain PeftModel)
TASK_TYPES = (None, "CAUSAL_LM", "SEQ_CLS", "TOKEN_CLS", "FEATURE_EXTRACTION", "QUESTION_ANS")


def _read(directory: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    if not (directory / CONFIG_NAME).is_file():
        raise LiandanError(f"load_peft_adapter: {directory} has no {CONFIG_NAME} (a peft adapter directory: "
                           "what PeftModel.save_pretrained writes)")
    try:
        config = json.loads((directory / CONFIG_NAME).read_text())
    except json.JSONDecodeError as e:
        raise LiandanError(f"load_peft_adapter: {directory / CONFIG_NAME} is not JSON ({e})") from e
    if (directory / WEIGHTS_NAME).is_file():
        from safetensors.torch import load_file

        return config, load_file(str(directory / WEIGHTS_NAME))
    if (directory / LEGACY_WEIGHTS_NAME).is_file():  # peft before safetensors
        return config, torch.load(directory / LEGACY_WEIGHTS_NAME, map_location="cpu", weights_only=True)
    raise LiandanError(f"load_peft_adapter: {directory} has no {WEIGHTS_NAME} (nor {LEGACY_WEIGHTS_NAME})")


def _per_layer(model: nn.Module, weights: dict[str, torch.Tensor], suffixes: tuple[str, ...], peft_type: str,
               shapes: Callable[[int, int, dict], tuple]) -> dict[str, dict]:
    """``{module path: {suffix: tensor}}`` from peft's ``base_model.model.<path>.<suffix>`` keys,
    checked against the model before anything changes: every path a Linear or Conv1D of it, every
    tensor of the shape ``shapes(in, out, tensors)`` gives (one per suffix)."""
    out: dict[str, dict] = {}
    for key, t in weights.items():
        suffix = next((s for s in suffixes if key.startswith(PREFIX) and key.endswith("." + s)), None)
        if suffix is None:
            if not key.startswith("base_model.vera_"):
                raise LiandanError(f"load_peft_adapter: {peft_type}: unexpected tensor {key!r} (liandan reads "
                                   f"{', '.join(suffixes)}); the adapter uses a peft option liandan lacks")
            continue
        out.setdefault(key[len(PREFIX): -len(suffix) - 1], {})[suffix] = t
    if not out:
        raise LiandanError(f"load_peft_adapter: {peft_type}: the weights hold no {suffixes[0]} tensors")
    names = dict(_hf_root(model)[0].named_modules())
    missing = [p for p in out if p not in names]
    if missing:
        have = [n for n, m in names.items() if n and adaptable(m)]
        raise LiandanError(f"load_peft_adapter: {peft_type}: the model has no module {missing[0]!r} "
                           f"({len(missing)} of the adapter's {len(out)} target modules missing; its Linear "
                           f"layers: {', '.join(have[:8])}{' ...' if len(have) > 8 else ''}): "
                           "not the base model the adapter was trained on")
    for path, tensors in out.items():
        layer = names[path]
        if not adaptable(layer):
            raise LiandanError(f"load_peft_adapter: {peft_type}: target {path!r} is a {type(layer).__name__}; "
                               "liandan adapts Linear and Conv1D layers")
        want = dict(zip(suffixes, shapes(*dims(layer), tensors), strict=True))
        got = {s: tuple(tensors[s].shape) if s in tensors else None for s in suffixes}
        if got != want:
            raise LiandanError(f"load_peft_adapter: {peft_type} {path!r}: tensors {got} do not fit the layer "
                               f"({want}): not the base model the adapter was trained on")
    return out


def _split_saved(config: dict, weights: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """peft's ``modules_to_save`` tensors apart from the adapter's: ``({path in the model: tensor},
    the rest)``. A saved module's keys are ``<prefix><path>.<param>`` with a module named in the list
    on the path (``base_model.model.classifier.weight``; ``base_model.classifier.weight`` for prompt
    methods)."""
    names = set(config.get("modules_to_save") or [])
    prefix = PROMPT_PREFIX if str(config.get("peft_type", "")).upper() in PROMPT_TYPES else PREFIX
    saved, rest = {}, {}
    for key, t in weights.items():
        parts = key.removeprefix(prefix).split(".")
        if names and key.startswith(prefix) and any(p in names for p in parts[:-1]):
            saved[".".join(parts)] = t
        else:
            rest[key] = t
    return saved, rest


def _check_saved(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    params = dict(_hf_root(model)[0].named_parameters())
    for path, t in saved.items():
        if path not in params:
            raise LiandanError(f"load_peft_adapter: modules_to_save: the model has no parameter {path!r} (a "
                               "classifier head saved with the adapter): not the model class it was trained on")
        if params[path].shape != t.shape:
            raise LiandanError(f"load_peft_adapter: modules_to_save {path!r}: {tuple(t.shape)} does not fit the "
                               f"model's {tuple(params[path].shape)} (another number of labels?)")


@torch.no_grad()
def _load_saved(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    root = _hf_root(model)[0]
    for path, t in saved.items():
        p = root.get_parameter(path)
        p.copy_(t)
        p.requires_grad_(True)


def _pattern(patterns: dict, path: str, default: Any) -> Any:
    """peft's ``get_pattern_key``: a key matches a module name that ends in it."""
    return next((v for k, v in patterns.items() if re.match(rf"(.*\.)?({k})$", path)), default)


def _refuse(config: dict, options: tuple, what: str, method: str) -> None:
    for field, off in options:
        if config.get(field, off) not in (off, [], {}):
            raise LiandanError(f"load_peft_adapter: the peft {what} uses {field}={config[field]!r}, which liandan's "
                               f"{method} does not have")


def _load_lora(model: nn.Module, config: dict, weights: dict, method: str) -> None:
    _refuse(config, LORA_OFF, "LoRA", method)
    rslora = bool(config.get("use_rslora", False))
    if rslora and method == "qlora":
        raise LiandanError("load_peft_adapter: the peft LoRA uses use_rslora, which liandan's qlora does not have")
    prefix = _hf_root(model)[1]

    def shapes(in_f: int, out_f: int, t: dict) -> tuple:
        r = t["lora_A.weight"].shape[0] if "lora_A.weight" in t else 0
        return (r, in_f), (out_f, r)

    layers = _per_layer(model, weights, ("lora_A.weight", "lora_B.weight"), "LORA", shapes)
    alpha = config.get("lora_alpha", 8)
    ranks = {p: t["lora_A.weight"].shape[0] for p, t in layers.items()}  # per layer: peft's rank_pattern applied
    alphas = {p: _pattern(config.get("alpha_pattern") or {}, p, alpha) for p in layers}
    builder = ADAPTERS.get(method).fn
    options = {"dropout": float(config.get("lora_dropout", 0.0)), "targets": [prefix + p for p in layers],
               **({"rslora": rslora} if rslora else {})}
    adapter = builder(r=next(iter(ranks.values())), alpha=alpha, **options)
    if len(set(ranks.values())) > 1 or len(set(alphas.values())) > 1:  # rank_pattern / alpha_pattern: per layer
        def per_layer(name: str, layer: nn.Module) -> nn.Module:
            path = name[len(prefix):]
            return builder(r=ranks[path], alpha=alphas[path], **options).wrap(name, layer)

        adapter.wrap = per_layer
    apply_adapter(model, adapter)
    with torch.no_grad():
        for path, m in _layers(model, prefix):
            m.lora_A.copy_(layers[path]["lora_A.weight"])
            m.lora_B.copy_(layers[path]["lora_B.weight"])


def _load_vera(model: nn.Module, config: dict, weights: dict, method: str) -> None:
    _refuse(config, (("bias", "none"),), "VeRA", method)
    prefix = _hf_root(model)[1]
    r = int(config.get("r", 256))
    layers = _per_layer(model, weights, ("vera_lambda_b", "vera_lambda_d"), "VERA",
                        lambda in_f, out_f, _t: ((out_f,), (r,)))
    a, b = weights.get("base_model.vera_A"), weights.get("base_model.vera_B")
    if config.get("save_projection", True) and (a is None or b is None):
        raise LiandanError("load_peft_adapter: VERA: save_projection is true but the weights hold no "
                           "base_model.vera_A / base_model.vera_B")
    # peft's projections come from torch.Generator().manual_seed(projection_prng_key), A then B, Kaiming-uniform
    # with gain √2: liandan's vera(seed=...) draws the same, so an adapter saved without them still loads
    adapter = ADAPTERS.get(method).fn(r=r, d_initial=float(config.get("d_initial", 0.1)),
                                      dropout=float(config.get("vera_dropout", 0.0)),
                                      seed=int(config.get("projection_prng_key", 0)),
                                      targets=[prefix + p for p in layers])
    if a is not None and b is not None:
        names = dict(_hf_root(model)[0].named_modules())
        max_in, max_out = (max(dims(names[p])[i] for p in layers) for i in (0, 1))
        if a.shape != (r, max_in) or b.shape != (max_out, r):
            raise LiandanError(f"load_peft_adapter: VERA: projections A {tuple(a.shape)}, B {tuple(b.shape)} do not "
                               f"fit rank {r} and these layers (A {(r, max_in)}, B {(max_out, r)})")
    apply_adapter(model, adapter)
    with torch.no_grad():
        for path, m in _layers(model, prefix):
            if a is not None and b is not None:
                m.vera_A = a[:, : m.vera_A.shape[1]].to(m.vera_A)  # views of one shared A and B (buffers)
                m.vera_B = b[: m.vera_B.shape[0]].to(m.vera_B)
            m.lambda_b.copy_(layers[path]["vera_lambda_b"])
            m.lambda_d.copy_(layers[path]["vera_lambda_d"])


def _load_virtual(model: nn.Module, config: dict, weights: dict, method: str) -> None:
    from liandan.adapters.prefix_tuning import kv_shape, prefix_adapter
    from liandan.adapters.prompt_tuning import hf_model

    peft_type = config["peft_type"]
    if config.get("task_type") not in TASK_TYPES or config.get("num_transformer_submodules") not in (None, 1):
        raise LiandanError(f"load_peft_adapter: {peft_type} for task_type {config.get('task_type')!r}: liandan's "
                           f"{method} serves decoder-only LMs and encoders, not encoder-decoders")
    if "prompt_embeddings" not in weights:
        raise LiandanError(f"load_peft_adapter: {peft_type}: the weights hold no prompt_embeddings")
    flat = weights["prompt_embeddings"]
    n = int(config.get("num_virtual_tokens") or flat.shape[0])
    hf = hf_model(model, method)  # a decoder-only Hugging Face LM without a prompt method yet
    if peft_type == "PROMPT_TUNING":
        want = (n, hf.get_input_embeddings().weight.shape[1])
    else:
        layers, heads, head_dim = kv_shape(hf)
        want = (n, layers * 2 * heads * head_dim)
    if tuple(flat.shape) != want:
        raise LiandanError(f"load_peft_adapter: {peft_type}: prompt_embeddings {tuple(flat.shape)} do not fit this "
                           f"model's {want}: not the base model the adapter was trained on")
    with torch.random.fork_rng(devices=[]):  # the placeholder init must not move the caller's random stream
        if peft_type == "PROMPT_TUNING":
            apply_adapter(model, ADAPTERS.get("prompt_tuning").fn(num_virtual_tokens=n, init="random",
                                                                 positions="shift"))
        else:  # peft's file holds the prefix itself (through the MLP if any): it loads as a direct prefix
            apply_adapter(model, prefix_adapter(method, n, False, None, "shift"))
    with torch.no_grad():
        model.prompt_encoder.embedding.copy_(flat)


def load_peft_adapter(model: nn.Module, directory: str | Path, method: str | None = None) -> nn.Module:
    """Apply the peft adapter in ``directory`` (``adapter_config.json`` + ``adapter_model.safetensors``
    or ``.bin``, from peft's ``save_pretrained`` or :func:`save_peft_adapter`) to ``model`` as
    liandan's own adapter, weights loaded: the model then gives peft's logits. Freezes the base
    and leaves the adapter trainable, as :func:`~liandan.adapters.apply_adapter`.

    ``method`` picks the liandan method among those the peft_type maps to (LORA: ``lora``,
    ``qlora``; PREFIX_TUNING: ``prefix_tuning``, ``p_tuning_v2``; default the first, or
    ``p_tuning_v2`` for a prefix without ``prefix_projection``). An unknown peft_type, peft
    options liandan lacks, or target modules the model lacks raise a :class:`LiandanError`.
    Returns ``model``.
    """
    directory = Path(directory)
    config, weights = _read(directory)
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type not in LOADS_AS:
        hint = (" (peft's P_TUNING is Liu et al. 2021's prompt encoder; liandan's p_tuning_v2 is peft's "
                "PREFIX_TUNING)" if peft_type == "P_TUNING" else "")
        raise LiandanError(f"load_peft_adapter: peft_type {config.get('peft_type')!r} in {directory / CONFIG_NAME} "
                           f"has no liandan method{hint}; liandan reads {', '.join(LOADS_AS)}")
    if method is None:
        no_mlp = peft_type == "PREFIX_TUNING" and not config.get("prefix_projection", False)
        method = "p_tuning_v2" if no_mlp else LOADS_AS[peft_type][0]
    if method not in LOADS_AS[peft_type]:
        raise LiandanError(f"load_peft_adapter: a peft {peft_type} adapter loads as "
                           f"{' or '.join(LOADS_AS[peft_type])}, not {method!r}")
    saved, weights = _split_saved(config, weights)
    _check_saved(model, saved)
    load = {"LORA": _load_lora, "VERA": _load_vera}.get(peft_type, _load_virtual)
    load(model, config, weights, method)
    _load_saved(model, saved)
    return model
