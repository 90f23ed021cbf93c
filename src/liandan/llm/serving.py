"""Serving many LoRA adapters on one frozen base model, batches mixing them row by row.

After S-LoRA (Sheng et al. 2023, "S-LoRA: Serving Thousands of Concurrent LoRA Adapters") and
Punica (Chen et al. 2023, "Punica: Multi-Tenant LoRA Serving"), reduced to what means something
on a CPU:

- **One base, never merged.** The base run loads once; its target layers become
  :class:`~liandan.llm.serving_layer.MultiLoraLinear`, which adds each row's own low-rank update
  ``s_k · B_k A_k x`` to the shared ``W₀x`` (a gather + batched matmul: Punica's BGMV).
  Per-adapter merging ("merge, swap, unmerge") would serve one adapter per batch.
- **A host pool and a bounded resident set.** Every added adapter sits in host memory (its
  ``A``/``B`` tensors, unpadded); at most ``max_active`` are *resident* in the stacked store the
  layers compute from. A batch's adapters are made resident on demand, evicting the least
  recently used (S-LoRA's unified memory pool pages adapters between host and GPU memory the
  same way; there it shares the pool with the KV cache, which this server does not page).
  Loads, hits and evictions are counted (:meth:`AdapterServer.stats`).
- **Mixed batches.** ``logits`` and ``generate`` take one adapter name per row (``"__base__"``:
  the base model alone); rows of up to ``max_active`` distinct adapters run in one forward, more
  are split into such groups. Generation batches prompts of the same token length (no padding,
  as :func:`liandan.generation.text.exact_match`); S-LoRA's continuous batching is out of scope.

Adapters come from LoRA fine-tunes of the base run (``adapter.safetensors`` + recipe), checked
to share the base's frozen weights (a hash of the tensors), tokenizer and target layers.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liandan.errors import LiandanError
from liandan.llm.serving_layer import (
    BASE_SLOT,
    MultiLoraLinear,
    PooledAdapter,
    SlotRouting,
    fine_tune_base_tensors,
    fingerprint,
    read_lora_run,
)

BASE = "__base__"  # the adapter name of rows served by the base model alone (as peft's adapter_names)


class AdapterServer:
    """One frozen base model serving many LoRA adapters, each batch row with its own.

    ``base_run`` is a run directory (or, for benchmarks and tests, an ``nn.Module`` taking token
    ids; then only :meth:`add_lora` adds adapters and :meth:`generate` needs token ids).
    """

    def __init__(self, base_run: str | Path | nn.Module, *, max_active: int = 8, device: str = "cpu") -> None:
        if max_active < 1:
            raise LiandanError("serve: max_active must be ≥ 1")
        self.device = torch.device(device)
        self.base_dir: Path | None = None
        self.tokenizer: Any = None
        self._tokenizer_text: str | None = None
        if isinstance(base_run, nn.Module):
            model = base_run
        else:
            from liandan.training.run import load_run

            run = load_run(base_run)
            self.base_dir, model = run.dir, run.model
            if run.info.tokenizer:
                from liandan.data.tokenize import load_tokenizer

                self.tokenizer = load_tokenizer(run.dir / run.info.tokenizer)
                self._tokenizer_text = (run.dir / run.info.tokenizer).read_text()
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.base_fingerprint = fingerprint(self.model.state_dict().items())  # before any layer is replaced
        self.max_active = max_active
        self._pool: dict[str, PooledAdapter] = {}
        self._resident: OrderedDict[str, int] = OrderedDict()  # name -> slot, least recently used first
        self._free = list(range(max_active, 0, -1))  # slots 1..K (0 is the base)
        self._layers: dict[str, MultiLoraLinear] = {}
        self._routing: SlotRouting | None = None
        self.counts = {"loads": 0, "hits": 0, "evictions": 0}

    # --- the host pool -------------------------------------------------------------------------

    @property
    def adapters(self) -> list[str]:
        return list(self._pool)

    def add_adapter(self, name: str, run_dir: str | Path) -> PooledAdapter:
        """Add the LoRA fine-tune ``run_dir`` of this server's base run as ``name``."""
        if self.base_dir is None:
            raise LiandanError("serve: this server was built from a model, not a run; use add_lora")
        self._check_name(name)
        from liandan.training.run import weights_path

        pooled, _ = read_lora_run(name, run_dir)
        d, where = Path(run_dir), f"adapter {name!r} ({run_dir})"
        theirs = fingerprint(fine_tune_base_tensors(weights_path(d), pooled.layers))
        if theirs != self.base_fingerprint:
            from liandan.recipe import load_recipe

            frm = load_recipe(d / "recipe.yaml").model.from_run
            raise LiandanError(f"{where}: fine-tuned from {frm}, whose weights are not this server's base "
                               f"{self.base_dir}")
        tok = d / "tokenizer.json"
        if self._tokenizer_text is not None and tok.is_file() and tok.read_text() != self._tokenizer_text:
            raise LiandanError(f"{where}: its tokenizer differs from the base run's")
        return self.add_lora(name, pooled.layers, pooled.scaling, source=pooled.source)

    def add_lora(self, name: str, layers: dict[str, tuple[torch.Tensor, torch.Tensor]], scaling: float,
                 source: str = "tensors") -> PooledAdapter:
        """Add an adapter given as ``{layer name: (A (r, in), B (out, r))}`` and its scaling."""
        self._check_name(name)
        where = f"adapter {name!r} ({source})"
        if not layers:
            raise LiandanError(f"{where}: no LoRA layers given")
        targets = self._layers or {n: m for n, m in self.model.named_modules() if n in layers}
        if set(layers) != set(targets):
            if self._layers:
                raise LiandanError(f"{where}: adapts {sorted(layers)} but this server's adapters adapt "
                                   f"{sorted(self._layers)}; serve adapters with the same targets together")
            raise LiandanError(f"{where}: no layer {sorted(set(layers) - set(targets))[0]!r} in the base model")
        from liandan.adapters.base import adaptable, dims

        for n, (a, b) in layers.items():
            layer = targets[n]
            in_f, out_f = (layer.in_features, layer.out_features) if isinstance(layer, MultiLoraLinear) else \
                dims(layer) if adaptable(layer) else (None, None)
            if in_f is None or a.dim() != 2 or b.dim() != 2 or a.shape[1] != in_f or b.shape != (out_f, a.shape[0]):
                raise LiandanError(f"{where}: {n}: A {tuple(a.shape)} and B {tuple(b.shape)} do not fit the base "
                                   f"layer ({in_f} -> {out_f})")
        pin = self.device.type == "cuda"
        cpu = lambda t: t.detach().to("cpu").contiguous()  # noqa: E731
        host = {n: (cpu(a), cpu(b)) for n, (a, b) in layers.items()}
        if pin:  # page-locked host memory: the host-to-device copies of a load run asynchronously
            host = {n: (a.pin_memory(), b.pin_memory()) for n, (a, b) in host.items()}
        rank = max(a.shape[0] for a, _ in host.values())
        pooled = PooledAdapter(name, host, float(scaling), rank, source)
        self._install(targets, rank)
        self._pool[name] = pooled
        return pooled

    def remove_adapter(self, name: str) -> None:
        if name not in self._pool:
            raise LiandanError(f"serve: no adapter {name!r}{self._listing()}")
        slot = self._resident.pop(name, None)
        if slot is not None:
            for layer in self._layers.values():
                layer.clear(slot)
            self._free.append(slot)
        del self._pool[name]

    def stats(self) -> dict[str, Any]:
        """Pool and resident-set facts: S-LoRA's adapter traffic in counts and bytes."""
        store = sum(m.A.nbytes + m.B.nbytes for m in self._layers.values())
        return {**self.counts, "pooled": self.adapters, "resident": list(self._resident),
                "max_active": self.max_active, "pool_bytes": sum(p.nbytes for p in self._pool.values()),
                "resident_store_bytes": store, "r_max": max((m.rank for m in self._layers.values()), default=0)}

    def _check_name(self, name: str) -> None:
        if not name or name == BASE or any(c in name for c in ":= \t\n"):
            raise LiandanError(f"serve: bad adapter name {name!r} (not {BASE!r}, no ':', '=' or spaces)")
        if name in self._pool:
            raise LiandanError(f"serve: an adapter named {name!r} is already loaded")

    def _listing(self) -> str:
        return f"; loaded: {', '.join(self._pool) or '(none)'} (or {BASE})"

    def _install(self, targets: dict[str, nn.Module], rank: int) -> None:
        """Replace the target layers by multi-adapter layers (first adapter), or widen their rank."""
        if self._layers:
            for layer in self._layers.values():
                layer.grow_rank(rank)
            return
        w = next(iter(targets.values())).weight
        self._routing = SlotRouting(self.max_active, w.device, w.dtype)
        for name, layer in targets.items():
            parent_name, _, attr = name.rpartition(".")
            parent = self.model.get_submodule(parent_name) if parent_name else self.model
            new = MultiLoraLinear(layer, self.max_active, rank, self._routing)
            setattr(parent, attr, new)
            self._layers[name] = new

    # --- the resident set (LRU) ----------------------------------------------------------------

    def _make_resident(self, names: list[str]) -> dict[str, int]:
        """Slots of ``names`` (at most ``max_active``, distinct), loading the missing ones into free
        slots or over the least recently used adapters the batch does not need."""
        slots = {}
        for n in names:
            if n in self._resident:
                self._resident.move_to_end(n)
                self.counts["hits"] += 1
                slots[n] = self._resident[n]
        for n in names:
            if n in slots:
                continue
            if self._free:
                slot = self._free.pop()
            else:
                victim = next(v for v in self._resident if v not in slots)
                slot = self._resident.pop(victim)
                self.counts["evictions"] += 1
            pooled = self._pool[n]
            for layer_name, (a, b) in pooled.layers.items():
                self._layers[layer_name].load(slot, a, b)
            self._routing.scaling[slot] = pooled.scaling
            self._resident[n] = slot
            self.counts["loads"] += 1
            slots[n] = slot
        return slots

    def _groups(self, rows: list[str]) -> list[tuple[list[int], list[str]]]:
        """Rows split into groups of at most ``max_active`` distinct adapters (resident ones first,
        so that a batch that fits loads nothing); ``__base__`` rows join the first group."""
        for n in rows:
            if n != BASE and n not in self._pool:
                raise LiandanError(f"serve: unknown adapter {n!r}{self._listing()}")
        distinct = sorted(dict.fromkeys(n for n in rows if n != BASE), key=lambda n: n not in self._resident)
        chunks = [distinct[i:i + self.max_active] for i in range(0, len(distinct), self.max_active)] or [[]]
        out = []
        for i, chunk in enumerate(chunks):
            members = set(chunk) | ({BASE} if i == 0 else set())
            out.append(([j for j, n in enumerate(rows) if n in members], chunk))
        return [(r, c) for r, c in out if r]

    @contextmanager
    def _route(self, rows: list[str], chunk: list[str]) -> Iterator[None]:
        """Make ``chunk`` resident and point each row at its slot for the forwards inside."""
        if not chunk:  # base rows only: the multi-adapter layers pass W₀x through untouched
            yield
            return
        slots = self._make_resident(chunk)
        idx = [slots.get(n, BASE_SLOT) for n in rows]
        self._routing.index = torch.tensor(idx, dtype=torch.int64, device=self.device)  # (B,)
        try:
            yield
        finally:
            self._routing.index = None

    def _names(self, adapter_names: str | list[str], n: int) -> list[str]:
        if n == 0:
            raise LiandanError("serve: an empty batch (give at least one row)")
        names = [adapter_names] * n if isinstance(adapter_names, str) else list(adapter_names)
        if len(names) != n:
            raise LiandanError(f"serve: {n} rows but {len(names)} adapter names (one per row)")
        return names

    # --- serving -------------------------------------------------------------------------------

    @torch.no_grad()
    def logits(self, ids: torch.Tensor, adapter_names: str | list[str]) -> torch.Tensor:
        """Logits ``(B, T, V)`` of token ids ``(B, T)``, row b through adapter ``adapter_names[b]``."""
        from liandan.training.setup import torch_threads

        ids = torch.as_tensor(ids, dtype=torch.int64, device=self.device)
        names = self._names(adapter_names, len(ids))
        out: torch.Tensor | None = None
        with torch_threads(model=self.model):
            for rows, chunk in self._groups(names):
                with self._route([names[j] for j in rows], chunk):
                    part = self.model(ids[rows])  # (b, T, V): one forward for the whole group
                if out is None:
                    out = part.new_empty((len(ids), *part.shape[1:]))
                out[rows] = part
        return out

    @torch.no_grad()
    def generate_ids(self, ids: torch.Tensor, adapter_names: str | list[str], max_new_tokens: int = 32, *,
                     greedy: bool = True, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None, eos: int | None = None, seed: int = 0) -> torch.Tensor:
        """Extend prompts ``(B, T)`` (one length) by up to ``max_new_tokens``, row b through adapter
        ``adapter_names[b]``, with the KV cache (:func:`liandan.generation.text.sample_tokens`). ``(B, T + n)``."""
        from liandan.generation.text import sample_tokens
        from liandan.training.setup import torch_threads

        ids = torch.as_tensor(ids, dtype=torch.int64, device=self.device)
        names = self._names(adapter_names, len(ids))
        g = torch.Generator(device=self.device).manual_seed(seed)
        parts = []
        with torch_threads(model=self.model):
            for rows, chunk in self._groups(names):
                with self._route([names[j] for j in rows], chunk):
                    parts.append((rows, sample_tokens(self.model, ids[rows], max_new_tokens, eos=eos, generator=g,
                                               temperature=0.0 if greedy else temperature, top_k=top_k, top_p=top_p)))
        out = ids.new_zeros((len(ids), max(p.shape[1] for _, p in parts)))  # groups may stop early at eos
        for rows, p in parts:
            out[rows, : p.shape[1]] = p
        return out

    def generate(self, prompts: list[str], adapter_names: str | list[str], max_new_tokens: int = 32, *,
                 greedy: bool = True, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0) -> list[dict[str, Any]]:
        """Complete each text prompt with its row's adapter (as :func:`liandan.generation.text.generate`:
        ``<bos>`` + the prompt's tokens, stopping at ``<eos>``). Prompts of one token length share
        a batch; one dict per prompt: prompt, adapter, completion, tokens, finish."""
        from liandan.data.tokenize import BOS, EOS

        if self.tokenizer is None:
            raise LiandanError("serve: generate needs a language-model base run with a tokenizer")
        if max_new_tokens < 1:
            raise LiandanError("serve: max_new_tokens must be ≥ 1")
        names = self._names(adapter_names, len(prompts))
        encoded = [[BOS, *self.tokenizer.encode(p)] for p in prompts]
        by_len: dict[int, list[int]] = {}
        for i, e in enumerate(encoded):
            by_len.setdefault(len(e), []).append(i)
        results: list[dict[str, Any]] = [{} for _ in prompts]
        for length, rows in sorted(by_len.items()):
            out = self.generate_ids(torch.tensor([encoded[i] for i in rows]), [names[i] for i in rows],
                                    max_new_tokens, greedy=greedy, temperature=temperature, top_k=top_k,
                                    top_p=top_p, eos=EOS, seed=seed)[:, length:].tolist()
            for i, got in zip(rows, out, strict=True):
                new = got[: got.index(EOS)] if EOS in got else got[:max_new_tokens]
                results[i] = {"prompt": prompts[i], "adapter": names[i], "completion": self.tokenizer.decode(new),
                              "tokens": new, "finish": "eos" if EOS in got else "length"}
        return results


def serve_adapters(base_run: str | Path, adapters: dict[str, str | Path], prompts: list[tuple[str, str]],
                   max_new_tokens: int = 32, max_active: int = 8, temperature: float = 0.0,
                   seed: int = 0) -> dict[str, Any]:
    """``liandan serve-adapters``: load ``base_run`` and ``adapters`` ({name: fine-tuned run}),
    complete ``prompts`` ([(adapter name, text)]) in one mixed batch; results and pool stats."""
    import time

    if not prompts:
        raise LiandanError("serve-adapters: give at least one --prompt NAME:TEXT")
    server = AdapterServer(base_run, max_active=max_active)
    for name, run_dir in adapters.items():
        server.add_adapter(name, run_dir)
    t0 = time.perf_counter()
    results = server.generate([p for _, p in prompts], [n for n, _ in prompts], max_new_tokens,
                              greedy=temperature <= 0, temperature=temperature, seed=seed)
    wall = time.perf_counter() - t0
    return {"base": str(base_run), "adapters": {n: str(d) for n, d in adapters.items()}, "results": results,
            "wall_s": wall, "tokens": sum(len(r["tokens"]) for r in results), "stats": server.stats()}
