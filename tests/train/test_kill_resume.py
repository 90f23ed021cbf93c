"""Reduced kill test (bench/kill_resume.py runs the full one): SIGKILL at random moments,
resume, and the final weights are bit-identical to an uninterrupted run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "kill_resume.py"


def test_sigkill_then_resume_is_bit_identical() -> None:
    r = subprocess.run([sys.executable, str(BENCH), "--trials", "3", "--seed", "1", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    trials = json.loads(r.stdout)
    assert len(trials) == 3
    for t in trials:
        assert t["killed"] and t["newest_ok"] and t["resumed"] and t["identical"], t
