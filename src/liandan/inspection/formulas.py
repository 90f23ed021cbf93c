"""Closed-form parameter and MAC counts for conv and linear layers, and their explanations.

The summary counts MACs by tracing the real forward (``FlopCounterMode``); these formulas are
the independent cross-check and what ``liandan summary --explain LAYER`` prints:

- Conv: params = (k_h·k_w·C_in/groups + 1)·C_out (no "+1" without bias);
  MACs = B·H_out·W_out·C_out·k_h·k_w·C_in/groups (each output value is one dot product of
  length k_h·k_w·C_in/groups), H_out = ⌊(H_in + 2·pad − dil·(k−1) − 1)/stride⌋ + 1.
- Linear: params = (in + 1)·out; MACs = N·in·out, N the number of input rows.
- FLOPs = 2·MACs (one multiply and one add); bias adds and activations are not counted, as in
  torchvision's and timm's tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn
from torch.nn.utils import parametrize

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class Formula:
    params: int | None  # None when the weight is reparametrised (weight/spectral norm)
    macs: int


def _times(*xs: object) -> str:
    return "·".join(str(x) for x in xs)


def formula(m: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Formula | None:
    """The formula counts for one call of ``m`` (None for layer types without a formula)."""
    plain = not parametrize.is_parametrized(m)
    if isinstance(m, CONVS):
        k = math.prod(m.kernel_size)
        per_out = k * m.in_channels // m.groups
        params = (per_out + (m.bias is not None)) * m.out_channels if plain else None
        # out_shape = (B, C_out, *spatial) or (C_out, *spatial) for unbatched input
        positions = math.prod(out_shape) // m.out_channels
        return Formula(params, positions * m.out_channels * per_out)
    if isinstance(m, nn.Linear):
        params = (m.in_features + (m.bias is not None)) * m.out_features if plain else None
        rows = math.prod(in_shape[:-1])
        return Formula(params, rows * m.in_features * m.out_features)
    return None


def explain(name: str, m: nn.Module, in_shape: tuple[int, ...] | None, out_shape: tuple[int, ...] | None,
            params: int, macs: int) -> str:
    """Human-readable derivation of a layer's parameters and MACs with its numbers filled in."""
    head = repr(m) if "\n" not in repr(m) else type(m).__name__  # containers: just the type
    lines = [f"{name}: {head}"]
    if in_shape is not None:
        lines.append(f"  input {tuple(in_shape)} -> output {tuple(out_shape) if out_shape else '?'}")
    ok = lambda a, b: "✓" if a == b else "✗ MISMATCH"  # noqa: E731
    if isinstance(m, CONVS) and in_shape is not None and out_shape is not None:
        k, cin, cout, g = m.kernel_size, m.in_channels, m.out_channels, m.groups
        b = int(m.bias is not None)
        f = formula(m, in_shape, out_shape)
        assert f is not None
        ks = _times(*reversed(k))  # written k_w·k_h as in the reference formula
        kname = ("k", "k_w·k_h", "k_w·k_h·k_d")[len(k) - 1]
        if f.params is not None:
            lines += [
                f"  params = ({kname}·C_in/groups + bias)·C_out",
                f"         = ({ks}·{cin}/{g} + {b})·{cout} = {f.params:,}   "
                f"[counted {params:,} {ok(f.params, params)}]",
            ]
        else:
            lines.append(f"  params = {params:,} (weight is reparametrised: no closed form checked)")
        spatial = out_shape[-len(k):]
        if isinstance(m.padding, tuple):
            axes = zip(in_shape[-len(k):], spatial, k, m.stride, m.padding, m.dilation, strict=True)
            for axis, (hi, ho, kk, s, p, d) in enumerate(axes):
                lbl = "HWD"[axis] if len(k) > 1 else "L"
                lines.append(f"  {lbl}_out = ⌊({lbl}_in + 2·pad − dil·(k−1) − 1)/stride⌋ + 1"
                             f" = ⌊({hi} + 2·{p} − {d}·{kk - 1} − 1)/{s}⌋ + 1 = {ho}")
        batch = math.prod(out_shape[:-len(k) - 1]) if len(out_shape) > len(k) + 1 else 1
        names = "·".join(["B", *("H_out", "W_out", "D_out")[: len(k)]]) if len(k) > 1 else "B·L_out"
        lines += [
            f"  MACs = {names}·C_out·{kname}·C_in/groups",
            f"       = {_times(batch, *spatial, cout, ks, cin)}/{g} = {f.macs:,}   "
            f"[FlopCounterMode {macs:,} {ok(f.macs, macs)}]",
        ]
    elif isinstance(m, nn.Linear) and in_shape is not None and out_shape is not None:
        f = formula(m, in_shape, out_shape)
        assert f is not None
        rows = math.prod(in_shape[:-1])
        b = int(m.bias is not None)
        if f.params is not None:
            lines += [
                "  params = (in_features + bias)·out_features",
                f"         = ({m.in_features} + {b})·{m.out_features} = {f.params:,}   "
                f"[counted {params:,} {ok(f.params, params)}]",
            ]
        lines += [
            "  MACs = N·in_features·out_features   (N = input rows = product of the leading dims)",
            f"       = {_times(rows, m.in_features, m.out_features)} = {f.macs:,}   "
            f"[FlopCounterMode {macs:,} {ok(f.macs, macs)}]",
        ]
    elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)):
        c = (getattr(m, "num_features", None) or getattr(m, "num_channels", None)
             or math.prod(m.normalized_shape))
        lines.append(f"  params = 2·C (γ scale and β shift) = 2·{c} = {2 * c:,}   [counted {params:,}]"
                     if getattr(m, "weight", None) is not None else f"  params = {params:,} (no affine γ/β)")
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            lines.append(f"  buffers: running_mean, running_var ({c} each) are state, not parameters")
        lines.append(f"  MACs = {macs:,} (elementwise normalisation is not counted)")
    else:
        lines += [f"  params = {params:,} (sum of its parameters' numel; no closed form for this type)",
                  f"  MACs = {macs:,} (FlopCounterMode)"]
    lines.append(f"  FLOPs = 2·MACs = {2 * macs:,}")
    return "\n".join(lines)
