"""Kill test: SIGKILL a training process at random moments (some during a checkpoint write),
resume it, and check the final weights are bit-identical to a run that was never stopped.

    python bench/kill_resume.py --trials 10        # full form
    python bench/kill_resume.py --trials 3 --json  # the reduced form the test suite runs

Prints one row per trial and a last line ``identical N/N``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

RECIPE = "wine-mlp"
OVERRIDES = ["train.epochs=25", "train.checkpoint_every=1", "train.keep_checkpoints=2", "doctor.enabled=false",
             "train.tensorboard=false", "train.threads=1", "report=false"]


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "liandan", *args]


def _train_cmd(out: Path) -> list[str]:
    sets = [x for o in OVERRIDES for x in ("--set", o)]
    return _cmd("train", RECIPE, "--out", str(out), "-q", *sets)


def _final(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / "last.safetensors")


def trial(root: Path, i: int, rng: random.Random, reference: dict[str, torch.Tensor]) -> dict:
    from liandan.training.checkpoint import list_checkpoints

    out = root / f"trial{i}"
    proc = subprocess.Popen(_train_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # wait until training has begun (metrics.csv exists), then kill at a random moment
    t0 = time.time()
    while not (out / "metrics.csv").exists() and proc.poll() is None and time.time() - t0 < 60:
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.8))
    in_write = False
    if proc.poll() is None:
        ck = out / "checkpoints"
        in_write = ck.is_dir() and any(p.name.startswith(".") for p in ck.iterdir())
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = proc.returncode == -signal.SIGKILL
    ckpts = list_checkpoints(out / "checkpoints")
    newest_ok = True
    if ckpts:  # the newest complete checkpoint must load
        try:
            torch.load(ckpts[-1] / "state.pt", weights_only=True)
            load_file(ckpts[-1] / "model.safetensors")
        except Exception:  # noqa: BLE001
            newest_ok = False
    step = int(ckpts[-1].name.split("-")[1]) if ckpts else 0
    r = subprocess.run(_cmd("resume", str(out), "-q"), capture_output=True, text=True)
    ok = r.returncode == 0
    final = _final(out) if ok else {}
    identical = ok and all(torch.equal(reference[k], final[k]) for k in reference)
    return {"trial": i, "killed": killed, "at_step": step, "during_write": in_write, "newest_ok": newest_ok,
            "resumed": ok, "identical": identical}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run(_train_cmd(root / "reference"), check=True, stdout=subprocess.DEVNULL)
        reference = _final(root / "reference")
        results = [trial(root, i, rng, reference) for i in range(args.trials)]
    if args.json:
        print(json.dumps(results))
        return
    print(f"{'trial':>5} {'killed':>6} {'step':>5} {'in_write':>8} {'newest_ok':>9} {'identical':>9}")
    for r in results:
        print(f"{r['trial']:>5} {r['killed']!s:>6} {r['at_step']:>5} {r['during_write']!s:>8} "
              f"{r['newest_ok']!s:>9} {r['identical']!s:>9}")
    n = sum(r["identical"] and r["newest_ok"] for r in results)
    print(f"identical {n}/{len(results)}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
