"""Model summary: per-layer table, parameters, MACs, memory and CPU latency.

MACs are *counted*, not estimated: one forward runs under ``torch.utils.flop_counter.FlopCounterMode``
(which sees every aten matmul/conv, including ones issued outside modules) and FLOPs = 2·MACs.
Numbers are per forward at the given batch size; the ImageNet reference tables (torchvision
"GFLOPS", timm "GMACs") are MACs at batch 1. Conv and linear layers are cross-checked against
the closed-form formulas of :mod:`liandan.inspection.formulas`.

``device="meta"`` builds and runs the model on PyTorch's meta device: shapes only, no memory
and no arithmetic, so a 138 M-parameter VGG-16 is summarised in milliseconds (no latency).
"""

from __future__ import annotations

import copy
import inspect
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

from liandan.errors import LiandanError, did_you_mean
from liandan.inspection import formulas

PARAM_CONTAINER = "parametrizations"  # where torch.nn.utils.parametrize keeps reparametrised weights


@dataclass
class LayerInfo:
    name: str
    type: str
    depth: int
    output_shape: list[int] | None = None
    input_shape: list[int] | None = None
    params: int = 0  # the module's own parameters (children are their own rows)
    trainable_params: int = 0
    macs: int = 0  # counted, this module's own ops (children excluded), all calls summed
    calls: int = 0
    formula_params: int | None = None
    formula_macs: int | None = None


@dataclass
class Summary:
    """What :func:`summary` measured. ``str(summary)`` is the table; ``to_dict()`` the JSON."""

    model: str
    input_shape: list[int]
    device: str
    layers: list[LayerInfo]
    params: int
    trainable_params: int
    macs: int
    param_bytes: int
    buffer_bytes: int
    activation_bytes: int
    latency_ms: float | None = None
    latency_runs: int = 0
    threads: int = field(default_factory=torch.get_num_threads)
    _modules: dict[str, nn.Module] = field(default_factory=dict, repr=False)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def layer(self, name: str) -> LayerInfo:
        for info in self.layers:
            if info.name == name:
                return info
        names = [i.name for i in self.layers]
        raise LiandanError(f"no layer {name!r} in {self.model}{did_you_mean(name, names)}; "
                           f"layers: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}")

    def mismatches(self) -> list[str]:
        """Layers whose counted params/MACs differ from the closed-form formula (should be empty)."""
        out = []
        for i in self.layers:
            if i.formula_params is not None and i.formula_params != i.params:
                out.append(f"{i.name}: params {i.params} != formula {i.formula_params}")
            if i.formula_macs is not None and i.formula_macs != i.macs:
                out.append(f"{i.name}: MACs {i.macs} != formula {i.formula_macs}")
        return out

    def explain(self, name: str) -> str:
        """The formula for one layer's parameters and MACs with its numbers filled in."""
        info = self.layer(name)
        text = formulas.explain(info.name, self._modules[info.name],
                                tuple(info.input_shape) if info.input_shape else None,
                                tuple(info.output_shape) if info.output_shape else None,
                                info.params, info.macs // max(info.calls, 1))
        if info.calls > 1:
            text += f"\n  (called {info.calls}× per forward: the MACs above are for one call)"
        return text

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        d["flops"] = self.flops
        d["non_trainable_params"] = self.params - self.trainable_params
        d["units"] = {"macs": "multiply-accumulates per forward at this batch size", "flops": "2 * macs",
                      "bytes": "bytes", "latency_ms": "median CPU milliseconds per forward (eval, no grad)"}
        d["mismatches"] = self.mismatches()
        return d

    def table(self) -> str:
        rows = [("Layer", "Type", "Output shape", "Params", "MACs")]
        for i in self.layers:
            rows.append(("  " * i.depth + (i.name or "(model)"), i.type,
                         "×".join(map(str, i.output_shape)) if i.output_shape else "-",
                         f"{i.params:,}" + ("" if i.trainable_params == i.params else " (frozen part)"),
                         f"{i.macs:,}"))
        other = self.macs - sum(i.macs for i in self.layers)
        if other:
            rows.append(("(ops outside leaf layers)", "", "", "", f"{other:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(5)]
        fmt = lambda r: "  ".join(x.rjust(w) if c >= 3 else x.ljust(w)  # noqa: E731
                                   for c, (x, w) in enumerate(zip(r, widths, strict=True)))
        rule = "-" * len(fmt(rows[0]))
        lines = [fmt(rows[0]), rule, *map(fmt, rows[1:]), rule]
        shape = "×".join(map(str, self.input_shape))
        lines += [
            f"{self.model}  input {shape}  ({self.device})",
            f"params:           {self.params:,} ({_mib(self.param_bytes)})  "
            f"trainable {self.trainable_params:,}",
            f"MACs:             {self.macs:,} ({_si(self.macs)})  FLOPs = 2·MACs = {_si(self.flops)}",
            f"buffers:          {_mib(self.buffer_bytes)} (e.g. BatchNorm running statistics)",
            f"activations:      {_mib(self.activation_bytes)} (leaf-layer outputs of one forward)",
        ]
        if self.latency_ms is not None:
            lines.append(f"latency:          {self.latency_ms:.3g} ms (CPU, median of {self.latency_runs}, "
                         f"{self.threads} threads, eval, no grad)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _si(n: int) -> str:
    """1814073344 -> '1.814 G' (decimal units, as MAC tables are quoted)."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.4g} {unit}"
    return str(n)


def _mib(n: int) -> str:
    """Bytes in binary units: 512 B, 3.5 KiB, 44.59 MiB, 1.20 GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def build_model(name: str, input_shape: Sequence[int] | None, options: dict[str, Any],
                device: str = "cpu") -> tuple[nn.Module, tuple[int, ...]]:
    """Build registered model ``name`` for an input of ``input_shape`` (batch included).

    Without ``input_shape``: the ``input_shape`` option if set, else the entry's ``ref_input``,
    else the builder's ``input_shape`` default, else 3×224×224; at batch 1. The builder's
    ``in_channels`` and ``input_shape`` are inferred from the input by
    :func:`liandan.api_models.create_model`, as training infers them from the data.
    """
    from liandan.api_models import create_model
    from liandan.registry import MODELS

    if input_shape is None:
        entry = MODELS.get(name)
        params = entry.options()
        default = params["input_shape"].default if "input_shape" in params else None
        if default is inspect.Parameter.empty:
            default = None
        opts = entry.validate(dict(options), where="model")
        sample = opts.get("input_shape") or entry.extra.get("ref_input") or default or (3, 224, 224)
        input_shape = (1, *sample)
    shape = tuple(int(s) for s in input_shape)
    with torch.device(device):
        model = create_model(name, {"input_shape": shape[1:]}, **options)
    return model, shape


def summary(
    model_or_name: nn.Module | str,
    input_shape: Sequence[int] | None = None,
    *,
    device: str = "cpu",
    latency_runs: int = 10,
    latency_budget_s: float = 3.0,
    example: torch.Tensor | None = None,
    **model_options: Any,
) -> Summary:
    """Summarise a model: per-layer table, parameters, MACs, memory and CPU latency.

    ``model_or_name`` is an ``nn.Module`` or a registered model name (built with
    ``model_options``, e.g. ``num_classes=10``; the builder's own ``input_shape``/``in_channels``
    options are filled from ``input_shape``, as training fills them from the data).
    ``input_shape`` includes the batch dimension (``(1, 3, 224, 224)``); required for a module
    unless ``example`` (an input tensor) is given.
    ``device="meta"`` counts without allocating (no latency). ``latency_runs=0`` skips timing.
    """
    if isinstance(model_or_name, str):
        label = model_or_name
        model, shape = build_model(model_or_name, input_shape, model_options, device)
    else:
        if model_options:
            raise LiandanError("model options are only for a registered model name, not a module")
        model, label = model_or_name, type(model_or_name).__name__
        if example is None and input_shape is None:
            raise LiandanError("summary of a module needs input_shape (batch included) or an example input")
        shape = tuple(example.shape if example is not None else (int(s) for s in input_shape or ()))
        if device == "meta" and any(not p.is_meta for p in model.parameters()):
            model = copy.deepcopy(model).to("meta")  # never move the caller's model
    dev = torch.device(device)
    x = example.to(dev) if example is not None else torch.randn(shape, device=dev)
    if example is None and isinstance(model_or_name, str) and _takes_tokens(model_or_name):
        x = torch.randint(0, 2, shape, device=dev)  # token ids (0 and 1 exist in every vocabulary)

    was_training = model.training
    model.eval()  # shapes and MACs of inference: BN uses running stats, aux heads and dropout are off
    try:
        s = _measure(model, x, label, shape, str(dev))
        if dev.type == "cpu" and latency_runs > 0:
            s.latency_ms, s.latency_runs = _latency(model, x, latency_runs, latency_budget_s)
    finally:
        model.train(was_training)
    return s


def _takes_tokens(name: str) -> bool:
    from liandan.registry import MODELS

    return MODELS.get(name).extra.get("input_kind") == "tokens"


def _rows(model: nn.Module) -> dict[str, nn.Module]:
    """Modules shown as table rows: leaves, and containers that own parameters directly."""
    rows = {}
    for name, m in model.named_modules():
        if PARAM_CONTAINER in name.split("."):
            continue  # the reparametrisation's own modules: counted with their layer
        children = [n for n, _ in m.named_children() if n != PARAM_CONTAINER]
        if not children or _own_params(m):
            rows[name] = m
    return rows


def _own_params(m: nn.Module) -> list[nn.Parameter]:
    own = list(m.parameters(recurse=False))
    if parametrize.is_parametrized(m):
        own += list(getattr(m, PARAM_CONTAINER).parameters())
    return own


def _measure(model: nn.Module, x: torch.Tensor, label: str, shape: tuple[int, ...], device: str) -> Summary:
    rows = _rows(model)
    infos = {name: LayerInfo(name or "(model)", type(m).__name__, name.count("."))
             for name, m in rows.items()}
    order: dict[str, int] = {}  # first-call order: the table follows the forward, not __init__
    for name, m in rows.items():
        own = _own_params(m)
        infos[name].params = sum(p.numel() for p in own)
        infos[name].trainable_params = sum(p.numel() for p in own if p.requires_grad)
    act_bytes = [0]

    def hook(name: str):  # noqa: ANN202
        def fn(m: nn.Module, inputs: tuple, output: Any) -> None:
            info = infos[name]
            info.calls += 1
            order.setdefault(name, len(order))
            outs, ins = _tensors(output), _tensors(inputs)
            if outs:
                info.output_shape = list(outs[0].shape)
            if ins:
                info.input_shape = list(ins[0].shape)
            # In-place results (ReLU(inplace=True), Identity) reuse an input's memory: not new bytes.
            act_bytes[0] += sum(o.numel() * o.element_size() for o in outs if not any(o is i for i in ins))
            if ins and outs:
                f = formulas.formula(m, tuple(ins[0].shape), tuple(outs[0].shape))
                if f is not None:
                    info.formula_params = f.params
                    info.formula_macs = (info.formula_macs or 0) + f.macs
        return fn

    handles = [m.register_forward_hook(hook(name)) for name, m in rows.items()]
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(x)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise LiandanError(f"forward of {label} on input {tuple(shape)} failed: {first}") from None
    finally:
        for h in handles:
            h.remove()

    # FlopCounterMode keys modules "<RootClass>.<qualified name>" and counts children inside parents.
    counts = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    root = type(model).__name__
    inclusive = {name: counts.get(f"{root}.{name}" if name else root, 0) // 2
                 for name, _ in model.named_modules()}
    for name, m in rows.items():
        kids = sum(inclusive.get(f"{name}.{c}" if name else c, 0) for c, _ in m.named_children())
        infos[name].macs = inclusive[name] - kids
    params = list(model.parameters())
    buffers = list(model.buffers())
    ranked = sorted(infos, key=lambda n: order.get(n, len(order)))  # modules never called go last
    return Summary(
        model=label, input_shape=list(shape), device=device, layers=[infos[n] for n in ranked],
        params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        macs=counter.get_total_flops() // 2,
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        buffer_bytes=sum(b.numel() * b.element_size() for b in buffers),
        activation_bytes=act_bytes[0],
        _modules={info.name: rows[name] for name, info in infos.items()},
    )


def _tensors(obj: Any) -> list[torch.Tensor]:
    """Tensors in a module's inputs/outputs (tensor, tuple/list, dict), in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


@torch.inference_mode()
def _latency(model: nn.Module, x: torch.Tensor, runs: int, budget_s: float) -> tuple[float, int]:
    """Median wall time of up to ``runs`` forwards after one warm-up, stopping after ``budget_s``."""
    model(x)  # warm-up: first-call allocations and kernel selection
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < runs and (not times or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), len(times)


__all__ = ["LayerInfo", "Summary", "build_model", "summary"]
