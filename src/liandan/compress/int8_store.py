"""The quantised model on disk: int8 tensors with their scale and zero point, in safetensors.

A dynamically quantised ``Linear`` keeps its weight packed (a ``torch.ScriptObject``) that
safetensors cannot hold, and ``torch.save`` of it is a pickle. So the weight is written as its
parts, ``w ≈ s·(q − z)`` (Jacob et al. 2018):

    NAME.weight.int8        int8 tensor q (out, in)
    NAME.weight.scale       float64 [1]  s (torch keeps the scale in double)
    NAME.weight.zero_point  int64 [1]    z
    NAME.weight.fp16        float16 weight (``dtype: float16`` quantisation)
    NAME.bias               float32 bias (dynamic quantisation keeps it float)

Every other tensor (layers left in float, and LSTM/GRU weights, whose packed form has no public
per-tensor accessor) is stored as in a float run, and quantised again at load — a deterministic
function of them. :func:`load_quantized` rebuilds the module tree, quantises it and installs the
stored int8 weights with ``set_weight_bias``: the reloaded model is the measured one bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from liandan.errors import LiandanError

FORMAT = "liandan-dynamic-quantized"


def _qlinears(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    return [(n, m) for n, m in model.named_modules() if isinstance(m, QLinear)]


def quantized_state(before: nn.Module, after: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors that describe ``after`` (the quantised copy of ``before``), int8 where it is int8."""
    q = dict(_qlinears(after))
    state = {k: v.detach().contiguous() for k, v in before.state_dict().items()
             if k.rsplit(".", 1)[0] not in q}
    for name, m in q.items():
        w, b = m._weight_bias()
        if w.is_quantized:
            if w.qscheme() != torch.per_tensor_affine:
                raise LiandanError(f"{name}: only per-tensor int8 weights are stored (got {w.qscheme()})")
            state[f"{name}.weight.int8"] = w.int_repr().contiguous()
            state[f"{name}.weight.scale"] = torch.tensor([w.q_scale()], dtype=torch.float64)
            state[f"{name}.weight.zero_point"] = torch.tensor([w.q_zero_point()], dtype=torch.int64)
        else:
            state[f"{name}.weight.fp16"] = w.detach().to(torch.float16).contiguous()
        if b is not None:
            state[f"{name}.bias"] = b.detach().float().contiguous()
    return state


def save_quantized(before: nn.Module, after: nn.Module, path: Path, options: dict[str, Any]) -> Path:
    """Write ``after``'s weights (int8 parts, see the module docstring) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    meta = {"format": FORMAT, "dtype": str(options.get("dtype", "qint8"))}
    save_file(quantized_state(before, after), str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def is_quantized_file(path: Path) -> bool:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return (f.metadata() or {}).get("format") == FORMAT


def load_quantized(model: nn.Module, path: Path, options: dict[str, Any]) -> nn.Module:
    """``model`` (the float skeleton) quantised with ``options`` and given the stored weights."""
    from liandan.compress.quantize import apply_quantization

    state = load_file(str(path))
    float_part = {k: v for k, v in state.items() if not k.endswith((".int8", ".scale", ".zero_point", ".fp16"))}
    missing, unexpected = model.load_state_dict(float_part, strict=False)
    q = apply_quantization(model, options)
    qnames = dict(_qlinears(q))
    allowed = {f"{n}.{p}" for n in qnames for p in ("weight", "bias")}
    if set(missing) - allowed or set(unexpected) - allowed:
        raise LiandanError(f"{path}: weights do not match the model (missing {sorted(set(missing) - allowed)[:3]}, "
                           f"unexpected {sorted(set(unexpected) - allowed)[:3]})")
    for name, m in qnames.items():
        bias = state.get(f"{name}.bias")
        if f"{name}.weight.int8" in state:
            w = torch._make_per_tensor_quantized_tensor(
                state[f"{name}.weight.int8"], float(state[f"{name}.weight.scale"][0]),
                int(state[f"{name}.weight.zero_point"][0]))
        elif f"{name}.weight.fp16" in state:
            w = state[f"{name}.weight.fp16"].float()
        else:
            raise LiandanError(f"{path}: no stored weight for quantized layer {name!r}")
        m.set_weight_bias(w, bias)
    return q


def dequantized_copy(model: nn.Module) -> nn.Module:
    """A float copy of a dynamically quantised model: each int8 ``Linear`` becomes an ``nn.Linear``
    whose weight is ``s·(q − z)`` exactly (what ONNX export traces); refuses quantised LSTM/GRU."""
    import copy

    out = copy.deepcopy(model)
    for name, m in _qlinears(model):
        w, b = m._weight_bias()
        lin = nn.Linear(m.in_features, m.out_features, bias=b is not None)
        with torch.no_grad():
            lin.weight.copy_(w.dequantize() if w.is_quantized else w.float())
            if b is not None:
                lin.bias.copy_(b)
        parent, _, child = name.rpartition(".")
        setattr(out.get_submodule(parent) if parent else out, child, lin)
    left = sorted({m._get_name() for m in out.modules() if type(m).__module__.startswith("torch.ao.nn.quantized")})
    if left:
        raise LiandanError(f"cannot export quantized {', '.join(left)} (only int8 Linear layers dequantize)")
    if "device_anchor" in dict(out.named_parameters(recurse=False)):
        del out.device_anchor
    return out.eval()


def has_quantized(model: nn.Module) -> bool:
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())
