"""A tiny trained digits-lenet run (3 epochs, ~3 s) shared by the evaluation tests; trained once per
session at a path tests/report reuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


def tiny_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import liandan

    path = tmp_path_factory.getbasetemp() / "tiny-digits-lenet"
    summary = path / "summary.json"
    if not summary.exists() or json.loads(summary.read_text())["status"] == "running":
        liandan.train("digits-lenet", overrides=["train.epochs=3"], out=path, quiet=True)
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return tiny_run_dir(tmp_path_factory)


@pytest.fixture(autouse=True)
def _one_thread():
    # Small models on 2 shared cores: one thread is faster and leaves the other core free.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
