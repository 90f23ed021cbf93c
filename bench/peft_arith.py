"""Parameter-efficient fine-tuning, measured over seeds: a tiny GPT-2 that learned 2-digit addition
(arith-gpt) learns subtraction by full fine-tuning, LoRA, DyLoRA and VeRA — trainable parameters
against greedy exact match on 800 unseen problems, as mean ± spread over base/fine-tune seed pairs
(s, s): the base is arith-gpt trained with ``seed=s``, the fine-tune runs with ``seed=s`` (its
data split, init, order and the adapters' own random draws). DyLoRA's runs are also served at
ranks 2-8.

    python bench/peft_arith.py [--pairs 0-4] [--methods full,lora,dylora,vera] [--cache runs/bench-peft-arith]
    python bench/peft_arith.py --pairs 1 --methods lora --bar 0.85   # the check: exit 1 below the bar

Every method fine-tunes the ``arith-sub-lora`` preset's recipe (data, schedule, epochs); only the
adapter section and the learning rate change, so the LoRA row *is* the preset. The base runs are
trained once and cached under ``--cache`` (reused while their recipe equals arith-gpt's with that
seed). Spread is the sample standard deviation over the pairs; min is the worst pair. ``--bar``
makes it a check: exit status 1 when a LoRA pair ends below it (base seed 1 is the one on which the
earlier recipe, lr 1e-2 for 10 epochs, collapsed).

On the 2-core CPU sandbox (torch 2.13 CPU, one thread per run, pairs s = 0-4, 35 min in all with
the bases cached), exact match mean ± sd (min): full fine-tuning 0.993 ± 0.004 (0.986), LoRA r=16
0.976 ± 0.037 (0.910), DyLoRA r≤16 0.865 ± 0.067 (0.754; served at ranks 2/4/8: 0.271 / 0.639 /
0.846), VeRA r=256 0.682 ± 0.144 (0.509), no fine-tuning 0.005 ± 0.003. The earlier LoRA recipe
(lr 1e-2, 50 warmup steps, 10 epochs) on the same pairs: 0.741 ± 0.199 (0.431).

Last line: ``lora_exact_match_over_full = X`` (LoRA's mean exact match divided by full fine-tuning's;
with LoRA alone: ``lora_min_exact_match = X``).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

import torch

FAST = ["doctor.enabled=false", "train.tensorboard=false", "report=false", "train.threads=1"]
PRESET = "arith-sub-lora"
# learning rate of each method (None: the preset's); the adapter sections are in adapter_section()
METHODS: dict[str, float | None] = {"full": 3e-3, "lora": None, "dylora": None, "vera": 3e-2}
LABELS = {"full": "full fine-tuning", "lora": "lora (arith-sub-lora)", "dylora": "dylora", "vera": "vera r=256"}
SERVED_RANKS = (2, 4, 8)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()}-core CPU ({cpu}, torch {torch.__version__}, 1 thread per run)"


def base_run(cache: Path, seed: int, log) -> Path:
    """arith-gpt trained with ``seed``, from the cache when its recipe is the preset's."""
    import liandan
    from liandan.recipe import load_recipe
    from liandan.runs import RunDir

    out = cache / f"base-seed{seed}"
    want = load_recipe("arith-gpt", [f"seed={seed}"])
    if (out / "summary.json").is_file():
        have = load_recipe(out / "recipe.yaml")
        done = RunDir(out).status() == "completed"
        if done and all(getattr(have, k) == getattr(want, k) for k in ("seed", "data", "model", "optim", "schedule")) \
                and have.train.epochs == want.train.epochs:
            return out
    t0 = time.perf_counter()
    run = liandan.train("arith-gpt", overrides=[*FAST, f"seed={seed}"], out=out, quiet=True)
    log(f"  base seed {seed}: addition exact match {run.summary['final']['test']['exact_match']:.4f} "
        f"({time.perf_counter() - t0:.0f} s, cached in {out})")
    return out


def adapter_section(method: str, seed: int) -> dict | None:
    """The adapter each method trains through: the preset's LoRA as it is, DyLoRA with its rank,
    alpha and targets, VeRA on its targets; ``seed`` draws DyLoRA's ranks and VeRA's shared matrices."""
    from liandan.recipe import load_dict

    lora = load_dict(PRESET)["adapter"]
    return {"full": None, "lora": lora, "dylora": {**lora, "name": "dylora", "seed": seed},
            "vera": {"name": "vera", "r": 256, "targets": lora["targets"], "seed": seed}}[method]


def fine_tune(base: Path, method: str, seed: int, out: Path):
    import liandan
    from liandan.recipe import load_dict

    shutil.rmtree(out, ignore_errors=True)  # a fine-tune of an earlier invocation
    raw = {k: v for k, v in load_dict(PRESET).items() if k != "adapter"}
    if (adapter := adapter_section(method, seed)) is not None:
        raw["adapter"] = adapter
    lr = METHODS[method]
    return liandan.finetune(base, raw, overrides=[*FAST, f"seed={seed}", *([f"optim.lr={lr}"] if lr else [])],
                            out=out, quiet=True)


def spread(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.fmean(xs):.3f} ± {sd:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", default="0-4", help="seeds s of the pairs (s, s): a range 0-4 or a list 1,3")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    ap.add_argument("--cache", type=Path, default=Path("runs/bench-peft-arith"), help="where the base runs stay")
    ap.add_argument("--machine", default=None, help="the machine's name in the table (default: detected)")
    ap.add_argument("--bar", type=float, default=None, help="exit 1 if a LoRA pair's exact match is below this")
    args = ap.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    lo, dash, hi = args.pairs.partition("-")
    seeds = list(range(int(lo), int(hi) + 1)) if dash else [int(x) for x in args.pairs.split(",")]
    if bad := [m for m in methods if m not in METHODS]:
        raise SystemExit(f"unknown method {bad[0]!r}; choose from {', '.join(METHODS)}")
    torch.set_num_threads(1)
    import liandan
    from liandan.adapters.dylora import set_rank
    from liandan.evaluation.metrics import evaluate_loaded
    from liandan.recipe import load_dict, load_recipe
    from liandan.training.run import load_run

    def log(msg: str) -> None:
        print(msg, flush=True)

    ft_dir = args.cache / "fine-tunes"
    em: dict[str, list[float]] = {"base, no fine-tuning": []}
    em.update({m: [] for m in methods})
    trainable: dict[str, int] = {"base, no fine-tuning": 0}
    wall: dict[str, list[float]] = {m: [] for m in methods}
    served: dict[int, list[float]] = {b: [] for b in SERVED_RANKS}
    bases = {s: base_run(args.cache, s, log) for s in seeds}
    plain = {k: v for k, v in load_dict(PRESET).items() if k != "adapter"}  # the base's own parameters
    n_base = 0
    for s, base in bases.items():
        shutil.rmtree(ft_dir / f"s{s}-zero", ignore_errors=True)
        zero = liandan.finetune(base, plain, overrides=[*FAST, f"seed={s}", "train.epochs=0"],
                                out=ft_dir / f"s{s}-zero", quiet=True)
        n_base = zero.summary["params"]
        em["base, no fine-tuning"].append(zero.summary["final"]["test"]["exact_match"])
    for m in methods:  # method by method: the preset's own row (lora) is known first
        for s, base in bases.items():
            t0 = time.perf_counter()
            run = fine_tune(base, m, s, ft_dir / f"s{s}-{m}")
            wall[m].append(time.perf_counter() - t0)
            em[m].append(run.summary["final"]["test"]["exact_match"])
            trainable[m] = run.summary["trainable_params"]
            log(f"  pair ({s}, {s}) {m:<7} exact match {em[m][-1]:.4f}  ({wall[m][-1]:.0f} s)")
            if m == "dylora":
                dy = load_run(run.dir)
                data = liandan.build_data(dy.recipe.data, dy.recipe.seed, dy.recipe.task)
                for b in SERVED_RANKS:
                    set_rank(dy.model, b)
                    served[b].append(evaluate_loaded(dy, data, "test")["exact_match"])
    rec = load_recipe(PRESET)
    print(f"\nmachine: {args.machine or machine()}")
    print(f"base: arith-gpt, 2-digit addition GPT ({n_base:,} parameters) -> subtraction, {rec.train.epochs} epochs "
          f"of {PRESET}; test exact match over {len(seeds)} base/fine-tune seed pairs (s, s), s in {seeds}")
    print("| method | trainable | % of base | exact match, mean ± sd | min | max | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for m, xs in em.items():
        k = trainable.get(m, 0)
        w = f"{statistics.fmean(wall[m]):.0f}" if m in wall else "0"
        print(f"| {LABELS.get(m, m)} | {k:,} | {100 * k / n_base:.2f}% | {spread(xs)} | {min(xs):.3f} | "
              f"{max(xs):.3f} | {w} |")
    if "dylora" in methods:
        print("dylora served at rank: " + ", ".join(f"{b}: {spread(xs)} (min {min(xs):.3f})"
                                                 for b, xs in served.items()))
    below = args.bar is not None and "lora" in methods and min(em["lora"]) < args.bar
    if args.bar is not None and "lora" in methods:
        print(f"check: lora's worst pair {min(em['lora']):.4f} {'<' if below else '≥'} bar {args.bar}")
    if "full" in methods and "lora" in methods:
        print(f"lora_exact_match_over_full = {statistics.fmean(em['lora']) / statistics.fmean(em['full']):.3f}")
    elif "lora" in methods:
        print(f"lora_min_exact_match = {min(em['lora']):.4f}")
    if below:
        raise SystemExit(1)


if __name__ == "__main__":
    main()



