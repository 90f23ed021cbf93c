"""One small trained digits-mlp teacher (6 epochs, under a second of training) shared by every
compression test of the session; each test writes its compressed output under its own tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

QUIET = ["doctor.enabled=false", "train.tensorboard=false", "report=false"]


@pytest.fixture(scope="session")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import liandan

    path = tmp_path_factory.getbasetemp() / "compress-teacher-digits-mlp"
    summary = path / "summary.json"
    if not summary.exists() or json.loads(summary.read_text())["status"] == "running":
        liandan.train("digits-mlp", overrides=[*QUIET, "train.epochs=6", "optim.lr=5e-3"], out=path, quiet=True)
    return path
