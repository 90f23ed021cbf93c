"""Reduced kill test (bench/kill_resume.py runs the full one): SIGKILL at random moments,
resume, and the final weights are bit-identical to an uninterrupted run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "kill_resume.py"


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical() -> None:
    r = subprocess.run([sys.executable, str(BENCH), "--trials", "3", "--seed", "1", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    trials = json.loads(r.stdout)
    assert len(trials) == 3
    for t in trials:
        assert t["killed"] and t["newest_ok"] and t["resumed"] and t["identical"], t


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_marks_interrupted(tmp_path) -> None:
    import os
    import signal
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "liandan", "train", "wine-mlp", "--out", str(out), "-q",
           "--set", "train.epochs=3000", "--set", "doctor.enabled=false", "--set", "report=false"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
    t0 = time.time()
    while not (out / "metrics.csv").exists() and time.time() - t0 < 120:
        time.sleep(0.02)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err.decode()[-1000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["steps"] > 0
    from liandan.training.checkpoint import newest_checkpoint

    newest = newest_checkpoint(out / "checkpoints")
    assert newest is not None and int(newest.name.split("-")[1]) == summary["steps"]
