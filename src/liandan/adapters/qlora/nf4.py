"""4-bit NormalFloat, blockwise absmax scaling, double quantisation and nibble packing —
Dettmers, Pagnoni, Holtzman & Zettlemoyer, "QLoRA: Efficient Finetuning of Quantized LLMs" (NeurIPS 2023), §3.

**NF4** (§3, "4-bit NormalFloat"). Pretrained weights are roughly N(0, σ²), so the information-
theoretically good 4-bit code for a block rescaled to [−1, 1] is made of quantiles of N(0, 1):
``q_i = ½(Q_X(i/(2ᵏ+1)) + Q_X((i+1)/(2ᵏ+1)))``. To have an exact zero (padding, ReLU zeros) the
paper builds the code asymmetrically: 2ᵏ⁻¹ = 8 quantiles for the positive half and 7 for the negative
half, plus 0, all normalised by the largest. bitsandbytes (``create_normal_map``) evaluates the
quantile function on ``linspace(δ, ½, 9)[:-1]`` (positive) and ``linspace(δ, ½, 8)[:-1]`` (negative)
with ``δ = ½(1 − 1/30 + 1 − 1/32) = 0.9677083``: the midpoint of the two outermost probabilities
1 − 1/(2·15) and 1 − 1/(2·16), which keeps Q_X finite. :func:`nf4_from_quantiles` recomputes this;
:data:`NF4` is the published table (paper, appendix E; ``bitsandbytes`` ``get_4bit_type("nf4")``).

**Blockwise absmax** (§2): a block of B = 64 consecutive weights is stored as 4-bit indices into
the code and one float32 ``c = max|w|``; ``w ≈ c·NF4[idx]``. Rounding to the nearest code value makes
the error of each weight at most ``½·max_gap·c`` (max_gap = 1 − 0.7230, the top interval).

**Double quantisation** (§3): the absmax constants themselves cost 32/64 = 0.5 bit per parameter.
QLoRA quantises them again — mean subtracted (they are all positive), then 8-bit blockwise with block
256 — into bitsandbytes' signed dynamic 8-bit code (Dettmers 2016, :func:`dynamic_map`), leaving
8/64 + 32/(64·256) = 0.127 bit per parameter: 4.127 bits in all instead of 4.5.

Packing: two 4-bit indices per uint8, the first in the high nibble (bitsandbytes' order).
"""

from __future__ import annotations

import torch

# Published NF4 code (QLoRA appendix E; bitsandbytes get_4bit_type("nf4")), sorted: index = 4-bit code.
NF4 = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
])
NF4_OFFSET = 0.5 * ((1 - 1 / 30) + (1 - 1 / 32))  # 0.9677083: the outermost probability (see above)
DQ_BLOCK = 256  # the paper's block for the second quantisation


def nf4_from_quantiles(offset: float = NF4_OFFSET) -> torch.Tensor:
    """The NF4 code derived from N(0, 1) quantiles as bitsandbytes does: 8 positive, 7 negative, 0."""
    q = torch.special.ndtri  # Q_X, the inverse standard-normal CDF
    pos = q(torch.linspace(offset, 0.5, 9)[:-1].double())  # 8 values > 0
    neg = -q(torch.linspace(offset, 0.5, 8)[:-1].double())  # 7 values < 0
    v = torch.cat([pos, torch.zeros(1, dtype=torch.float64), neg]).sort().values
    return (v / v.max()).float()


def dynamic_map(max_exponent_bits: int = 7) -> torch.Tensor:
    """bitsandbytes' signed 8-bit dynamic code (``create_dynamic_map``; Dettmers 2016, "8-Bit
    Approximations for Parallelism in Deep Learning"): for exponent i = 0..6 the decade
    10^(i−6)·(0.1, 1] split into 2^i linear steps (their midpoints), ± each, plus 0 and 1: 256 values."""
    data: list[float] = []
    for i in range(max_exponent_bits):
        edges = torch.linspace(0.1, 1, 2 ** i + 1, dtype=torch.float64)
        means = (edges[:-1] + edges[1:]) / 2 * 10.0 ** (i - (max_exponent_bits - 1))
        data += means.tolist() + (-means).tolist()
    data += [0.0, 1.0]
    return torch.tensor(sorted(data), dtype=torch.float32)


DYNAMIC8 = dynamic_map()


def max_gap(code: torch.Tensor) -> float:
    """The largest distance between neighbouring code values: twice the worst rounding error."""
    return float(code.diff().max())


def nearest(x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Index (uint8) of the code value nearest to each element of ``x`` (code sorted ascending)."""
    mid = (code[1:] + code[:-1]) / 2
    return torch.bucketize(x, mid.to(x.device, x.dtype)).to(torch.uint8)


def _blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """``x`` flattened and zero-padded to whole blocks: ``(n_blocks, block)``."""
    flat = x.reshape(-1)
    pad = (-flat.numel()) % block
    return torch.cat([flat, flat.new_zeros(pad)]).view(-1, block)


def quantize_blockwise(x: torch.Tensor, code: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` → (indices uint8 ``(n_blocks·block,)``, absmax float32 ``(n_blocks,)``): ``x ≈ absmax·code[idx]``."""
    b = _blocks(x.detach().float(), block)
    absmax = b.abs().amax(dim=1)
    idx = nearest(b / absmax.clamp_min(torch.finfo(torch.float32).tiny)[:, None], code)
    return idx.reshape(-1), absmax


def dequantize_blockwise(idx: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, numel: int) -> torch.Tensor:
    """Inverse of :func:`quantize_blockwise`: the first ``numel`` values, float32, flat."""
    vals = code.to(absmax.device)[idx.long()].view(absmax.numel(), -1) * absmax[:, None]
    return vals.reshape(-1)[:numel]


def pack4(idx: torch.Tensor) -> torch.Tensor:
    """Two 4-bit indices per byte, the first in the high nibble (an even count; blocks are even)."""
    idx = idx.reshape(-1, 2)
    return (idx[:, 0] << 4) | idx[:, 1]


def unpack4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack4`: the indices, flat."""
    packed = packed.reshape(-1)
    return torch.stack([packed >> 4, packed & 0x0F], dim=1).reshape(-1)


def quantize_nf4(w: torch.Tensor, block: int = 64, double_quant: bool = True) -> dict[str, torch.Tensor]:
    """``w`` → the tensors QLoRA stores: ``qweight`` (uint8, numel/2 after padding to whole blocks)
    and either ``absmax`` (float32 per block) or, with double quantisation, ``absmax_q`` (uint8 per
    block), ``absmax_scale`` (float32 per 256 blocks) and ``absmax_mean`` (float32 scalar)."""
    if block % 2:
        raise ValueError(f"block size must be even (two codes per byte), got {block}")
    idx, absmax = quantize_blockwise(w, NF4, block)
    out = {"qweight": pack4(idx)}
    if double_quant:
        mean = absmax.mean()
        q2, scale2 = quantize_blockwise(absmax - mean, DYNAMIC8, DQ_BLOCK)
        out |= {"absmax_q": q2[: absmax.numel()], "absmax_scale": scale2, "absmax_mean": mean}
    else:
        out["absmax"] = absmax
    return out


def absmax_of(q: dict[str, torch.Tensor]) -> torch.Tensor:
    """The per-block absmax constants (dequantised first when double-quantised)."""
    if "absmax" in q:
        return q["absmax"]
    n = q["absmax_q"].numel()
    pad = (-n) % DQ_BLOCK
    idx = torch.cat([q["absmax_q"], q["absmax_q"].new_zeros(pad)])
    return dequantize_blockwise(idx, q["absmax_scale"], DYNAMIC8, n) + q["absmax_mean"]


def dequantize_nf4(q: dict[str, torch.Tensor], shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """float32 tensor of ``shape`` from :func:`quantize_nf4`'s output."""
    numel = int(torch.Size(shape).numel())
    return dequantize_blockwise(unpack4(q["qweight"]), absmax_of(q), NF4, numel).view(shape)
