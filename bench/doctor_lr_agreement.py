"""One opinion on the learning rate: does ``lr-find``'s suggestion pass the doctor?

For each preset: ``liandan.lr_find`` (the range test, default sweep 1e-7..10 over 100 steps, 400 when flat)
suggests a rate; the preset is then trained at that rate with the doctor on, and the table shows
what the doctor found. The doctor judges a rate against the same range test (it reads the curve
``lr_find`` cached, :mod:`liandan.doctor.lr_opinion`), so neither ``lr_too_high`` nor
``lr_too_low`` may appear; the other findings are shown for information (a preset trained at
another rate may overfit, for instance). Runs in a fresh ``LIANDAN_HOME`` (an empty cache).

    python bench/doctor_lr_agreement.py [--presets a,b] [--epochs N] [--seeds 0,1,2]

``--epochs`` caps each preset's epochs (default 5: the rate rules judge from the first epochs
on, and the sandbox has two cores). A flat curve (the loss never fell 5 % during the sweep:
``LRFindResult.informative`` is False — digits-vit needs warm-up and more than 100 steps) has no
suggestion worth the name: the doctor takes no opinion from it and judges by its own checks, so
such rows are marked ``flat`` and counted apart. Last line: ``N/M preset runs with an informative
curve draw no lr_too_high / lr_too_low at lr-find's suggestion (K flat curves)``.

Measured (2-core CPU sandbox, --epochs 3, seeds 0-2 on ten presets: 30 runs): no lr_too_high /
lr_too_low on any of the 30, and no flat curve — a flat 100-step sweep is now repeated with 4× the
steps (``lr_find(extend=4)``), which gives digits-vit a descending curve. Its suggestion (0.009-0.017)
still under-trains the ViT in 3 epochs (accuracy 0.13-0.31, ``underfitting``; the preset's 3e-3 with
warm-up trains it): a range test cannot see that a transformer needs warm-up. diabetes-regression's
noisy curve gives 0.026-0.51 (seed 5's 0.51 underfits, R² −1.3): its steepest point sits just before
the divergence.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

PRESETS = ("wine-mlp", "spirals-mlp", "digits-mlp", "digits-lenet", "diabetes-regression", "digits-moe",
           "digits-vit", "sine-lstm", "shapes-resnet18", "arith-gpt")
LR_CODES = ("lr_too_high", "lr_too_low")


def one(preset: str, seed_offset: int, epochs: int, root: Path) -> dict:
    import liandan
    from liandan.recipe import load_recipe
    from liandan.runs import read_json

    base = load_recipe(preset)
    ov = {"train.tensorboard": False, "train.threads": 1, "report": False,
          "train.epochs": min(base.train.epochs, epochs), "seed": base.seed + seed_offset}
    t0 = time.perf_counter()
    res = liandan.lr_find(preset, overrides={k: v for k, v in ov.items() if k != "train.epochs"})
    lo, hi = res.usable
    run = liandan.train(preset, overrides={**ov, "optim.lr": res.suggestion}, out=root / f"{preset}-s{seed_offset}",
                        quiet=True)
    doc = read_json(run.dir / "doctor.json")
    found = [f["code"] for f in doc["findings"]]
    final = run.summary["final"].get("test") or run.summary["final"].get("val") or {}
    metric = next((k for k in ("accuracy", "r2") if k in final), "loss")
    return {"preset": preset, "seed": base.seed + seed_offset, "optimizer": base.optim.name, "preset_lr": base.optim.lr,
            "suggestion": res.suggestion, "low": lo, "high": hi, "found": found, "metric": metric,
            "value": final.get(metric), "lr_findings": [c for c in found if c in LR_CODES],
            "informative": res.informative, "wall_s": time.perf_counter() - t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", default="0", help="seed offsets added to each preset's seed")
    args = ap.parse_args()
    os.environ["LIANDAN_HOME"] = tempfile.mkdtemp(prefix="lr-agreement-home-")
    import torch

    torch.set_num_threads(1)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{'preset':<22} {'seed':>4} {'optim':<7} {'preset lr':>9} {'suggested':>9} {'usable range':>19}  "
          f"{'test metric':>16}  findings")
    rows = []
    with tempfile.TemporaryDirectory(prefix="lr-agreement-") as tmp:
        for p in presets:
            for k in seeds:
                r = one(p, k, args.epochs, Path(tmp))
                rows.append(r)
                val = "n/a" if r["value"] is None else f"{r['value']:.3f}"
                mark = "  <-- " + ",".join(r["lr_findings"]) if r["lr_findings"] and r["informative"] else ""
                mark += "  (flat curve: no opinion)" if not r["informative"] else ""
                print(f"{p:<22} {r['seed']:>4} {r['optimizer']:<7} {r['preset_lr']:>9.3g} {r['suggestion']:>9.3g} "
                      f"{r['low']:>9.3g}..{r['high']:<9.3g}  {r['metric']:>8} {val:>7}  "
                      f"{','.join(r['found']) or '-'}{mark}  ({r['wall_s']:.0f}s)", flush=True)
    read = [r for r in rows if r["informative"]]
    ok = sum(not r["lr_findings"] for r in read)
    print(f"{ok}/{len(read)} preset runs with an informative curve draw no lr_too_high / lr_too_low at lr-find's "
          f"suggestion ({len(rows) - len(read)} flat curves)")
    return 0 if ok == len(read) else 1


if __name__ == "__main__":
    sys.exit(main())
