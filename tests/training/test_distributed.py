"""Data parallel training with 2 gloo processes on this machine (torchrun)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import liandan

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")

SETS = ["doctor.enabled=false", "train.tensorboard=false", "report=false", "train.threads=1"]


def _cli(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "liandan", *args], env={**os.environ, **(env or {})}, **kw)


def _sets(extra: list[str]) -> list[str]:
    return [x for s in [*SETS, *extra] for x in ("--set", s)]


@pytest.mark.slow
def test_ddp_equals_single_process_accumulation(tmp_path) -> None:
    # iris: 120 training samples = 3 global batches of 2 × 20 per epoch, no BatchNorm or dropout
    rec = ["data.source=iris", "data.batch_size=20", "model.hidden=[16]", "model.dropout=0.0",
           "train.epochs=4", "optim.name=adamw", "optim.lr=0.01"]
    p = _cli("train", "wine-mlp", "--nproc", "2", "--out", str(tmp_path / "ddp"), "-q", *_sets(rec),
             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-2000:]
    single = liandan.train("wine-mlp", overrides=[*SETS, *rec, "train.accumulate=2"], out=tmp_path / "one", quiet=True)
    a = load_file(tmp_path / "ddp" / "checkpoints" / "last.safetensors")
    b = load_file(single.dir / "checkpoints" / "last.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5
    import json

    s = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert s["world_size"] == 2 and s["effective_batch_size"] == 40 and s["steps"] == single.summary["steps"] == 12


def _worker_pids(tag: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"LIANDAN_TEST_TAG={tag}".encode() in env and any(e.startswith(b"LOCAL_RANK=") for e in env):
            pids.append(int(d.name))
    return pids


@pytest.mark.slow
def test_killing_one_rank_fails_cleanly_and_resumes(tmp_path) -> None:
    run = tmp_path / "k"
    tag = f"kill{os.getpid()}"
    p = _cli("train", "wine-mlp", "--nproc", "2", "--out", str(run), "-q",
             *_sets(["train.epochs=60", "train.checkpoint_every=5"]), env={"LIANDAN_TEST_TAG": tag},
             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not list((run / "checkpoints").glob("step-*")) and time.time() - t0 < 120:
        time.sleep(0.05)
    workers = _worker_pids(tag)
    assert len(workers) == 2, workers
    os.kill(workers[-1], signal.SIGKILL)
    p.wait(timeout=120)
    assert p.returncode != 0  # the job fails as a whole, no hang
    from liandan.training.checkpoint import newest_checkpoint

    assert newest_checkpoint(run / "checkpoints") is not None
    r = _cli("resume", str(run), "--nproc", "2", "-q", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # shorten the rest of the job: resume honours the recipe, so stop it after it has clearly resumed
    r.wait(timeout=300)
    assert r.returncode == 0, r.stderr.read().decode()[-2000:]
    import json

    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "completed" and s["steps"] == 60 * 5  # 142 samples / (2 × 16) → 5 steps per epoch
