"""Parameter-efficient fine-tuning, measured: a tiny GPT-2 that learned 2-digit addition
(arith-gpt) learns subtraction by full fine-tuning, LoRA, DyLoRA and VeRA — trainable parameters
against greedy exact match on 800 unseen problems. DyLoRA's one run is then served at ranks 2-16.

    python bench/peft_arith.py [--base RUN] [--epochs 10]

Last line: ``lora_exact_match_over_full = X`` (LoRA's exact match divided by full fine-tuning's).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

FAST = ["doctor.enabled=false", "train.tensorboard=false", "report=false"]
TARGETS = ["c_attn", "c_proj", "c_fc"]  # every Linear of the blocks (c_proj: attention and MLP)
METHODS = {  # name -> (adapter section or None for full fine-tuning, learning rate)
    "full": (None, 3e-3),
    "lora r=16": ({"name": "lora", "r": 16, "alpha": 32, "targets": TARGETS}, 1e-2),
    "dylora r≤16": ({"name": "dylora", "r": 16, "alpha": 32, "targets": TARGETS}, 1e-2),
    "vera r=256": ({"name": "vera", "r": 256, "targets": TARGETS}, 3e-2),
}


def recipe(base: Path, adapter: dict | None, lr: float, epochs: int) -> dict:
    rec = {"name": "arith-sub", "seed": 0,
           "data": {"source": "arith", "n": 8000, "digits": 2, "operators": "-", "batch_size": 64},
           "model": {"name": "gpt", "size": "tiny", "layers": 2, "dim": 64, "heads": 4, "from_run": str(base)},
           "optim": {"name": "adamw", "lr": lr, "weight_decay": 0.0},
           "schedule": {"name": "cosine", "warmup_steps": 50},
           "train": {"epochs": epochs, "grad_clip": 1.0}}
    if adapter:
        rec["adapter"] = adapter
    return rec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", type=Path, help="a finished arith-gpt run (default: train one)")
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import liandan
    from liandan.adapters.dylora import set_rank
    from liandan.evaluation.metrics import evaluate_loaded
    from liandan.training.run import load_run

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = args.base or liandan.train("arith-gpt", overrides=FAST, out=tmp / "base", quiet=True).dir
        zero = liandan.train(recipe(base, None, 1e-3, 0), overrides=FAST, out=tmp / "zero", quiet=True)
        rows = [("base, no fine-tuning", 0, zero.summary["params"], zero.summary["final"]["test"]["exact_match"], 0.0)]
        runs = {}
        for name, (adapter, lr) in METHODS.items():
            t0 = time.perf_counter()
            r = liandan.train(recipe(base, adapter, lr, args.epochs), overrides=FAST, out=tmp / name.split()[0],
                              quiet=True)
            runs[name] = r
            rows.append((name, r.summary["trainable_params"], r.summary["params"],
                         r.summary["final"]["test"]["exact_match"], time.perf_counter() - t0))
        dy = load_run(runs["dylora r≤16"].dir)
        data = liandan.build_data(dy.recipe.data, dy.recipe.seed, dy.recipe.task)
        served = {}
        for rank in (2, 4, 8, 16):
            set_rank(dy.model, rank)
            served[rank] = evaluate_loaded(dy, data, "test")["exact_match"]
    n_base = rows[0][2]
    print(f"base: 2-digit addition GPT ({n_base:,} parameters) -> subtraction, {args.epochs} epochs, test exact match")
    print(f"{'method':<22}{'trainable':>11}{'% of base':>11}{'exact match':>13}{'wall s':>8}")
    for name, k, _, em, wall in rows:
        print(f"{name:<22}{k:>11,}{100 * k / n_base:>10.2f}%{em:>13.4f}{wall:>8.1f}")
    print("dylora served at rank: " + ", ".join(f"{b}: {em:.4f}" for b, em in served.items()))
    full, lora = rows[1][3], rows[2][3]
    print(f"lora_exact_match_over_full = {lora / full:.3f}")


if __name__ == "__main__":
    main()
