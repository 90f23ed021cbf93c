"""OOD detection tables (issue #6's acceptance): train the digits-lenet preset (or take a finished
run directory), score its test split against shapes rendered at 8×8 grey with every method
(AUROC, FPR@95 with OOD positive, AUPR-In, AUPR-Out), then sweep rotation 0–90° and report
AUROC ± standard error (Hanley & McNeil 1982) per method, and whether it rises within noise
(no later AUROC below an earlier one by more than two standard errors of the difference).

    python bench/ood_table.py [--run RUN] [--step 15]

Last line: ``min_auroc_vs_shapes = X`` over MSP, energy and Mahalanobis (acceptance: ≥ 0.95).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, help="a finished digits run (default: train digits-lenet)")
    ap.add_argument("--step", type=int, default=15, help="rotation step in degrees")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import liandan
    from liandan.evaluation.ood import ood_sweep
    from liandan.evaluation.ood_metrics import rises_within_noise

    fast = ["doctor.enabled=false", "train.tensorboard=false", "report=false"]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run or liandan.train("digits-lenet", overrides=fast, out=Path(tmp) / "lenet", quiet=True).dir
        shapes, *sweep = ood_sweep(run_dir, ["shapes", *(f"rotate:{d}" for d in range(0, 91, args.step))], "all")
    methods = list(shapes["methods"])
    print(f"ID: digits test ({shapes['id']['n']})  vs  OOD: {shapes['ood']['source']} ({shapes['ood']['n']})")
    print(f"{'method':<12}{'AUROC':>8}{'FPR@95':>8}{'AUPR-In':>9}{'AUPR-Out':>10}")
    for m, r in shapes["methods"].items():
        print(f"{m:<12}{r['auroc']:8.4f}{r['fpr95']:8.4f}{r['aupr_in']:9.4f}{r['aupr_out']:10.4f}")
    print("\nrotation sweep, AUROC ± SE")
    print(f"{'degrees':<10}" + "".join(f"{m:>16}" for m in methods))
    for r in sweep:
        deg = r["ood"]["source"].split(":")[1]
        print(f"{deg:<10}" + "".join(f"{r['methods'][m]['auroc']:>9.3f} ± {r['methods'][m]['auroc_se']:.3f}"
                                     for m in methods))
    rises = [rises_within_noise([r["methods"][m]["auroc"] for r in sweep], [r["methods"][m]["auroc_se"] for r in sweep])
             for m in methods]
    print(f"{'rises':<10}" + "".join(f"{'yes' if ok else 'no':>16}" for ok in rises))
    print(f"min_auroc_vs_shapes = {min(shapes['methods'][m]['auroc'] for m in ('msp', 'energy', 'mahalanobis')):.4f}")


if __name__ == "__main__":
    main()
