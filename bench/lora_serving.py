"""Multi-adapter LoRA serving (S-LoRA / Punica style), measured: one mixed batch of N rows over K
adapters against K separate single-adapter batches of N/K rows.

A GPT-2-style base (random weights: throughput does not depend on them) with K random LoRA
adapters on every block Linear (c_attn, c_proj, c_fc). Each row greedily generates ``--new``
tokens from a ``--prompt``-token prompt with the KV cache. Scenarios:

- mixed: one :meth:`AdapterServer.generate_ids` call, row i through adapter i mod K (BGMV);
- separate: K calls on the same server, each with one adapter's rows (the same layers);
- merged copies: K models with their adapter merged into a copy of the base (K× the base's
  memory, what S-LoRA avoids), each serving its rows without any LoRA arithmetic;
- base only: the same N rows through the base alone (the LoRA path's overhead is mixed / this).

    python bench/lora_serving.py [--rows 32] [--adapters 8] [--rank 8] [--new 32] [--threads 1]

Last line: ``mixed_over_separate = X`` (tokens/s of the mixed batch over the separate batches).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up (and, for the server, makes the adapters resident)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=32, help="batch rows N")
    ap.add_argument("--adapters", type=int, default=8, help="adapters K (rows split evenly)")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=16, help="prompt tokens")
    ap.add_argument("--new", type=int, default=32, help="generated tokens per row")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from liandan.adapters.base import add_to_weight
    from liandan.llm.serving import BASE, AdapterServer
    from liandan.models.hf_text import gpt

    base = gpt(vocab_size=64, max_len=args.prompt + args.new, layers=args.layers, dim=args.dim, heads=4).eval()
    k, n, d = args.adapters, args.rows, args.dim
    layers = [f"hf.transformer.h.{i}.{t}" for i in range(args.layers) for t in TARGETS]
    dims = {name: (base.get_submodule(name).nx, base.get_submodule(name).nf) for name in layers}  # Conv1D (in, out)
    adapters = {f"a{j}": {name: (torch.randn(args.rank, i) / i**0.5, torch.randn(o, args.rank) * 0.1)
                          for name, (i, o) in dims.items()} for j in range(k)}
    merged = {}
    for a, tensors in adapters.items():
        m = copy.deepcopy(base)
        for name, (lo_a, lo_b) in tensors.items():
            add_to_weight(m.get_submodule(name), (lo_b @ lo_a) * 2.0)
        merged[a] = m
    server = AdapterServer(base, max_active=k)
    for a, tensors in adapters.items():
        server.add_lora(a, tensors, scaling=2.0)
    names = [f"a{i % k}" for i in range(n)]
    ids = torch.randint(5, 64, (n, args.prompt), generator=torch.Generator().manual_seed(0))
    rows = {a: [i for i, x in enumerate(names) if x == a] for a in adapters}

    from liandan.generation.text import sample_tokens

    def mixed():
        return server.generate_ids(ids, names, args.new)

    def separate():
        return [server.generate_ids(ids[r], a, args.new) for a, r in rows.items()]

    def merged_copies():
        with torch.no_grad():
            return [sample_tokens(merged[a], ids[r], args.new, temperature=0) for a, r in rows.items()]

    def base_only():
        return server.generate_ids(ids, BASE, args.new)

    # the mixed batch equals the separate ones and the merged copies (greedy tokens, to float noise)
    out, sep = mixed(), separate()
    same = sum(torch.equal(out[r], s) for r, s in zip(rows.values(), sep, strict=True))
    same_merged = sum(torch.equal(out[r], s) for r, s in zip(rows.values(), merged_copies(), strict=True))
    tokens = n * args.new
    print(f"base: gpt2-style {args.layers} layers × {d} wide, {sum(p.numel() for p in base.parameters()):,} "
          f"params; {k} adapters r={args.rank} on {len(layers)} layers; {n} rows, prompt {args.prompt}, "
          f"+{args.new} tokens greedy; {args.threads} thread(s)")
    print(f"agreement (row groups with identical tokens): separate {same}/{k}, merged copies {same_merged}/{k}")
    print(f"{'scenario':<34}{'forwards/step':>14}{'wall s':>10}{'tokens/s':>12}")
    res = {}
    for key, label, fn, calls in [("mixed", "mixed batch (BGMV, one forward)", mixed, 1),
                                  ("separate", "separate batches (same server)", separate, k),
                                  ("merged", "separate merged copies (K models)", merged_copies, k),
                                  ("base", "base only (no adapter)", base_only, 1)]:
        wall = best_of(fn, args.repeats)
        res[key] = tokens / wall
        print(f"{label:<34}{calls:>14}{wall:>10.3f}{tokens / wall:>12.0f}")
    s = server.stats()
    print(f"pool: {s['pool_bytes'] / 1e6:.2f} MB host, {s['resident_store_bytes'] / 1e6:.2f} MB resident store; "
          f"loads {s['loads']}, evictions {s['evictions']}")
    print(f"lora_overhead_vs_base = {res['base'] / res['mixed']:.2f}")
    print(f"mixed_over_merged_copies = {res['mixed'] / res['merged']:.2f}")
    print(f"mixed_over_separate = {res['mixed'] / res['separate']:.2f}")

if __name__ == "__main__":
    main()
