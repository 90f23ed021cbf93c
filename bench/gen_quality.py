"""Sample quality of the generative presets (issue #7's acceptance): train the reference digits
classifier (preset digits-lenet, seed 0), train digits-dcgan and digits-ddpm (or take finished run
directories), draw ``n`` samples from each and report the fraction classified with confidence
≥ 0.9, the entropy of the predicted-class histogram, the classes present and wall times.
Acceptance: confident fraction ≥ 0.5 with all 10 classes present, for both.

    python bench/gen_quality.py [--n 500] [--ddpm-steps 100] [--dcgan RUN] [--ddpm RUN] [--classifier RUN]

``--ddpm-steps``: DDIM steps for the diffusion samples (1000 = full DDPM ancestral sampling).
Last line: ``min_confident_fraction = X`` (the worse of the two presets).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ddpm-steps", type=int, default=100)
    ap.add_argument("--dcgan", type=Path)
    ap.add_argument("--ddpm", type=Path)
    ap.add_argument("--classifier", type=Path)
    ap.add_argument("--json", action="store_true", help="also print each result as one JSON line on stderr")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import liandan
    from liandan.evaluation.generative import sample_quality, train_classifier

    fast = ["doctor.enabled=false", "train.tensorboard=false", "report=false"]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        clf = args.classifier or train_classifier(Path(tmp) / "classifier")
        t_clf = time.perf_counter() - t0
        rows = []
        for preset, given, steps in (("digits-dcgan", args.dcgan, None), ("digits-ddpm", args.ddpm, args.ddpm_steps)):
            t_train = cpu_train = None
            if given is None:
                c0 = time.process_time()  # CPU seconds: wall time depends on what else runs on the machine
                run = liandan.train(preset, overrides=fast, out=Path(tmp) / preset, quiet=True)
                given, t_train, cpu_train = run.dir, run.summary["wall_s"], time.process_time() - c0
            q = sample_quality(given, clf, n=args.n, seed=args.seed, steps=steps)
            q["train_wall_s"], q["train_cpu_s"] = t_train, cpu_train
            rows.append((preset, q))
            if args.json:
                print(json.dumps(q), file=sys.stderr)
        print(f"classifier: {clf} (trained in {t_clf:.1f} s)")
        print(f"{'run':<14} {'conf≥0.9':>8} {'entropy':>8} {'classes':>7} {'train s':>8} {'cpu s':>7} {'sample s':>8}")
        real = rows[0][1]["real"]
        print(f"{'real test':<14} {real['confident_fraction']:8.3f} {real['entropy_bits']:8.3f} "
              f"{real['classes_present']:7d} {'':>8} {'':>7} {'':>8}")
        for name, q in rows:
            tw = f"{q['train_wall_s']:.1f}" if q["train_wall_s"] is not None else "-"
            tc = f"{q['train_cpu_s']:.1f}" if q["train_cpu_s"] is not None else "-"
            print(f"{name:<14} {q['confident_fraction']:8.3f} {q['entropy_bits']:8.3f} {q['classes_present']:7d} "
                  f"{tw:>8} {tc:>7} {q['wall_s']['sampling']:8.1f}")
        print(f"min_confident_fraction = {min(q['confident_fraction'] for _, q in rows):.3f}")


if __name__ == "__main__":
    main()
