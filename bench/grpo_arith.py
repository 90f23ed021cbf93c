"""GRPO on arithmetic, measured: a tiny GPT-2 trained briefly on 2-digit addition (arith-gpt for
a few epochs, so its greedy exact match is mediocre) is fine-tuned with GRPO on the exact-match
reward (1 for the right answer, else 0), and its greedy exact match on the 800 unseen test
problems is compared before and after.

    python bench/grpo_arith.py [--base RUN] [--epochs 3] [--steps 150] [--group 8] [--batch 64]

Last line: ``exact_match_gain = X`` (test exact match after GRPO minus before).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

FAST = ["doctor.enabled=false", "train.tensorboard=false", "report=false"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", type=Path, help="a finished arith run (default: train arith-gpt briefly)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of the base run (arith-gpt's own: 15)")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--beta", type=float, default=0.04)
    ap.add_argument("--adapter", default=None, help="e.g. lora: train an adapter instead of every weight")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import liandan
    from liandan.llm.rl import grpo
    from liandan.training.rundir import read_metrics

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        base = args.base or liandan.train("arith-gpt", overrides=[*FAST, f"train.epochs={args.epochs}"],
                                          out=tmp / "base", quiet=True).dir
        base_wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        run = grpo(base, "exact", steps=args.steps, group=args.group, batch=args.batch, lr=args.lr, beta=args.beta,
                   adapter=args.adapter, out=tmp / "grpo", quiet=True)
        wall = time.perf_counter() - t0
        rows = [r for r in read_metrics(run.dir / "metrics.csv") if r["split"] == "step"]  # one per step
        check = liandan.exact_match(run.dir, "test")["exact_match"]  # the saved run, through generate
    s = run.summary
    before, after = s["before"]["test"]["exact_match"], s["final"]["test"]["exact_match"]
    print(f"base: arith-gpt (2-digit addition), {args.epochs} epochs, {base_wall:.1f} s; "
          f"{s['params']:,} parameters, {s['trainable_params']:,} trained by GRPO")
    print(f"GRPO: {args.steps} steps x {args.batch} prompts x {args.group} completions, lr {args.lr}, "
          f"beta {args.beta}, reward exact")
    tenth = max(1, len(rows) // 10)
    print(f"{'steps':>10}{'reward':>9}{'kl':>9}{'len':>6}")
    for i in range(0, len(rows), tenth):
        chunk = rows[i:i + tenth]
        mean = lambda k, c=chunk: sum(r[k] for r in c) / len(c)  # noqa: E731
        print(f"{chunk[0]['step']:>4}-{chunk[-1]['step']:<5}{mean('reward'):>9.3f}{mean('kl'):>9.4f}"
              f"{mean('completion_len'):>6.2f}")
    print(f"reward: first tenth {s['reward']['first']:.3f}, last tenth {s['reward']['last']:.3f}; "
          f"KL (last tenth) {s['kl']:.4f}")
    print(f"test exact match (greedy): before {before:.4f}, after {after:.4f} (generate.exact_match on the saved "
          f"run: {check:.4f})")
    print(f"test exact match (sampled at T=1, 4 per problem): before {s['before']['test']['sampled_exact_match']:.4f}, "
          f"after {s['final']['test']['sampled_exact_match']:.4f}")
    print(f"GRPO wall {wall:.1f} s ({wall / args.steps * 1000:.0f} ms/step, evaluation included)")
    print(f"exact_match_gain = {after - before:.4f}")


if __name__ == "__main__":
    main()
