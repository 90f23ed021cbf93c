"""Key/value cache speed-up of ``liandan.generate``'s sampler: a tiny GPT (``size: tiny``, one
thread) extends an 8-token prompt by ``--tokens`` tokens greedily, with the cache
(``decode_step``) and by re-reading the context (``use_cache=False``), alternating, ``--repeats`` times each.

    python bench/generate_speed.py [--tokens 200] [--repeats 5] [--style gpt2|llama]

Last line: ``cache_speedup = X`` (median re-read time / median cached time; both draw the same tokens).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from liandan.generation.text import sample_tokens
from liandan.models.hf_text import gpt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--style", default="gpt2", choices=["gpt2", "llama"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = gpt(vocab_size=512, max_len=args.tokens + 8, style=args.style, size="tiny").eval()
    prompt = torch.randint(3, 512, (1, 8))
    times: dict[str, list[float]] = {"cached": [], "re-read": []}
    outs = {}
    for _ in range(args.repeats):
        for name, cache in (("cached", True), ("re-read", False)):
            t0 = time.perf_counter()
            outs[name] = sample_tokens(model, prompt, args.tokens, temperature=0, use_cache=cache)
            times[name].append(time.perf_counter() - t0)
    assert torch.equal(outs["cached"], outs["re-read"]), "the cache changed the greedy tokens"
    print(f"{'sampler':<10} {'median s':>9} {'tokens/s':>9}")
    for name, ts in times.items():
        print(f"{name:<10} {statistics.median(ts):9.3f} {args.tokens / statistics.median(ts):9.0f}")
    print(f"cache_speedup = {statistics.median(times['re-read']) / statistics.median(times['cached']):.2f}")


if __name__ == "__main__":
    main()
