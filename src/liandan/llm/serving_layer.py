"""The pieces of :mod:`liandan.llm.serving`: the adapters it pools (read from LoRA fine-tunes and
checked against the base by a hash of the frozen tensors), and the multi-adapter LoRA layer: one
frozen base layer, K resident adapters, and a batch whose rows each pick their own adapter.

S-LoRA (Sheng et al. 2023, "S-LoRA: Serving Thousands of Concurrent LoRA Adapters") and Punica
(Chen et al. 2023, "Punica: Multi-Tenant LoRA Serving") never merge an adapter into the base
weight: the base product ``W₀x`` is shared by the whole batch, and the low-rank part is computed
per row against that row's adapter. Punica's BGMV kernel ("batched gather matrix-vector") gathers
each row's ``A`` and ``B`` from a stacked store by an index; here the gather is ``index_select``
and the product two ``torch.bmm`` calls:

    y_b = W₀ x_b + s_{k(b)} · B_{k(b)} A_{k(b)} x_b        k(b) = the slot of row b's adapter

The store holds ``A`` as ``(K+1, r_max, in)`` and ``B`` as ``(K+1, out, r_max)``. Adapters of a
smaller rank are zero-padded to ``r_max``: the extra rows of ``A`` give zero codes and the extra
columns of ``B`` multiply them, so the update is exactly the unpadded one (S-LoRA's kernels
handle ranks unpadded; padding trades a little arithmetic for one batched product). Slot 0 is
all zeros with scaling 0: the ``__base__`` rows get ``W₀x + 0`` exactly.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liandan.adapters.base import dims
from liandan.errors import LiandanError

BASE_SLOT = 0  # the all-zero adapter: rows served by the base model alone


@dataclass
class PooledAdapter:
    """One adapter in the host pool: per target layer ``A`` ``(r, in)`` and ``B`` ``(out, r)``."""

    name: str
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]]
    scaling: float  # α/r (rsLoRA: α/√r), as LoraLinear
    rank: int
    source: str

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes + b.nbytes for a, b in self.layers.values())


def fingerprint(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """SHA-256 over (name, dtype, shape, bytes) of the tensors, in name order."""
    h = hashlib.sha256()
    for name, t in sorted(tensors, key=lambda kv: kv[0]):
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def fine_tune_base_tensors(path: Path, lora_layers: Iterable[str]) -> Iterator[tuple[str, torch.Tensor]]:
    """The frozen base tensors in a LoRA fine-tune's checkpoint, named as in the base model
    (``L.base.weight`` -> ``L.weight`` for each LoRA layer ``L``; ``L.lora_*`` left out)."""
    from safetensors import safe_open

    prefixes = [(f"{n}.base.", f"{n}.") for n in lora_layers]
    skip = tuple(f"{n}.lora_" for n in lora_layers)
    with safe_open(str(path), "pt") as f:
        for key in f.keys():
            if key.startswith(skip):
                continue
            name = next((new + key[len(old):] for old, new in prefixes if key.startswith(old)), key)
            yield name, f.get_tensor(key)


def read_lora_run(name: str, run_dir: str | Path) -> tuple[PooledAdapter, Any]:
    """A LoRA fine-tune's adapter (from ``adapter.safetensors`` and the recipe's r, α, rsLoRA) and
    its recipe; LiandanError when ``run_dir`` is not a LoRA fine-tune."""
    from safetensors.torch import load_file

    from liandan.recipe import load_recipe
    from liandan.registry import ADAPTERS

    d = Path(run_dir)
    where = f"adapter {name!r} ({d})"
    if not (d / "recipe.yaml").is_file():
        raise LiandanError(f"{where}: not a run directory (no recipe.yaml)")
    recipe = load_recipe(d / "recipe.yaml")
    if recipe.adapter is None or not recipe.model.from_run:
        raise LiandanError(f"{where}: not an adapter fine-tune (its recipe has no adapter: section and "
                           "model.from_run); serve LoRA fine-tunes of the base run")
    if recipe.adapter.name != "lora":
        raise LiandanError(f"{where}: a {recipe.adapter.name!r} fine-tune; only LoRA adapters serve in mixed batches")
    if not (d / "adapter.safetensors").is_file():
        raise LiandanError(f"{where}: no adapter.safetensors (did the fine-tune finish?)")
    entry = ADAPTERS.get("lora")
    opts = {n: p.default for n, p in entry.options().items()}
    opts.update(entry.validate(recipe.adapter.options, where="adapter"))
    tensors = load_file(str(d / "adapter.safetensors"))
    layers = {}
    for key in sorted(tensors):
        layer, _, kind = key.rpartition(".")
        if kind not in ("lora_A", "lora_B"):
            raise LiandanError(f"{where}: unexpected tensor {key!r} in adapter.safetensors")
        if kind == "lora_A":
            if layer + ".lora_B" not in tensors:
                raise LiandanError(f"{where}: {layer}.lora_A has no lora_B")
            layers[layer] = (tensors[key], tensors[layer + ".lora_B"])
    if not layers:
        raise LiandanError(f"{where}: adapter.safetensors holds no LoRA tensors")
    r = int(opts["r"])
    scaling = float(opts["alpha"]) / (math.sqrt(r) if opts["rslora"] else r)
    return PooledAdapter(name, layers, scaling, r, str(d)), recipe



class SlotRouting:
    """What every :class:`MultiLoraLinear` of one model shares: the per-slot LoRA scaling ``(K+1,)``
    and, during a forward, the slot of each batch row ``(B,)`` (``None``: base only)."""

    def __init__(self, slots: int, device: torch.device, dtype: torch.dtype) -> None:
        self.scaling = torch.zeros(slots + 1, device=device, dtype=dtype)  # (K+1,)
        self.index: torch.Tensor | None = None  # (B,) int64, set by the server around a forward


class MultiLoraLinear(nn.Module):
    """A frozen ``nn.Linear`` / GPT-2 ``Conv1D`` plus a stacked store of K LoRA adapters.

    Buffers (not parameters: nothing here trains): ``A`` ``(K+1, r, in)``, ``B`` ``(K+1, out, r)``,
    both in the base weight's dtype and device. ``forward`` reads the rows' slots from the shared
    :class:`SlotRouting`.
    """

    def __init__(self, base: nn.Module, slots: int, rank: int, routing: SlotRouting) -> None:
        super().__init__()
        in_f, out_f = dims(base)
        w = base.weight
        self.base, self.routing = base, routing
        self.in_features, self.out_features = in_f, out_f
        self.register_buffer("A", torch.zeros(slots + 1, rank, in_f, dtype=w.dtype, device=w.device))
        self.register_buffer("B", torch.zeros(slots + 1, out_f, rank, dtype=w.dtype, device=w.device))

    @property
    def rank(self) -> int:
        return self.A.shape[1]

    def grow_rank(self, rank: int) -> None:
        """Re-pad the store to ``rank`` (a new adapter's rank exceeds every one so far)."""
        if rank <= self.rank:
            return
        k, r, _ = self.A.shape
        a = self.A.new_zeros(k, rank, self.in_features)  # (K+1, r', in)
        b = self.B.new_zeros(k, self.out_features, rank)  # (K+1, out, r')
        a[:, :r], b[:, :, :r] = self.A, self.B
        self.A, self.B = a, b

    @torch.no_grad()
    def load(self, slot: int, a: torch.Tensor, b: torch.Tensor) -> None:
        """Copy one adapter's ``a`` ``(r, in)`` and ``b`` ``(out, r)`` into ``slot``, zero-padded to
        the store's rank (on a GPU this is the host-to-device copy S-LoRA overlaps with compute)."""
        r = a.shape[0]
        self.A[slot].zero_()
        self.B[slot].zero_()
        self.A[slot, :r].copy_(a, non_blocking=True)
        self.B[slot, :, :r].copy_(b, non_blocking=True)

    @torch.no_grad()
    def clear(self, slot: int) -> None:
        self.A[slot].zero_()
        self.B[slot].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # (B, T, out): W₀x (+ bias), shared by every row
        idx = self.routing.index
        if idx is None:
            return y
        xb = x.reshape(len(idx), -1, x.shape[-1])  # (B, T, in)
        a = self.A.index_select(0, idx)  # (B, r, in): gather each row's A (BGMV's "gather")
        b = self.B.index_select(0, idx)  # (B, out, r)
        z = torch.bmm(xb, a.transpose(1, 2))  # (B, T, r): the low-rank codes
        delta = torch.bmm(z, b.transpose(1, 2))  # (B, T, out)
        s = self.routing.scaling.index_select(0, idx)  # (B,)
        return y + (delta * s[:, None, None]).reshape(y.shape)

    def extra_repr(self) -> str:
        k, r, _ = self.A.shape
        return f"in={self.in_features}, out={self.out_features}, slots={k - 1}, r_max={r}"
