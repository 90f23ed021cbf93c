"""Start-up times: ``liandan --help``, ``liandan list models``, and ``liandan train`` until its
first optimizer step (read from the first metrics.csv row's wall clock), each a fresh process.

    python bench/startup.py [--repeats 5]

Last line: ``help_s = X`` (median wall time of ``liandan --help``).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _time(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _first_step(tmp: Path, i: int) -> float:
    out = tmp / f"r{i}"
    cmd = [sys.executable, "-m", "liandan", "train", "digits-lenet", "--out", str(out), "-q",
           "--set", "train.max_steps=1", "--set", "report=false", "--set", "doctor.enabled=false"]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    csv = out / "metrics.csv"
    while p.poll() is None:  # the first step row is written right after the first step
        if csv.exists() and len(csv.read_text().splitlines()) > 1:
            break
        time.sleep(0.002)
    elapsed = time.perf_counter() - t0
    p.wait()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    liandan = [sys.executable, "-m", "liandan"]
    rows = {"liandan --help": [], "liandan list models": [], "train → first step": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            rows["liandan --help"].append(_time([*liandan, "--help"]))
            rows["liandan list models"].append(_time([*liandan, "list", "models"]))
            rows["train → first step"].append(_first_step(Path(tmp), i))
    print(f"{'command':<22} {'median s':>9} {'min s':>7}")
    for k, v in rows.items():
        print(f"{k:<22} {statistics.median(v):9.3f} {min(v):7.3f}")
    print(f"help_s = {statistics.median(rows['liandan --help']):.3f}")


if __name__ == "__main__":
    main()
