"""A tiny trained run shared by the report tests (trained once per session, ~3 s), with an OOD
result and a doctor.json beside it so every section of the report has content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DOCTOR = {
    "healthy": False,
    "findings": [
        {
            "code": "exploding_gradients",
            "severity": "error",
            "step": 37,
            "epoch": 1,
            "evidence": {"grad_norm": 1.2e7, "first_last_ratio": 95.0},
            "causes": ["learning rate too high for SGD without clipping"],
            "fixes": [
                {"say": "clip gradients by global norm", "patch": {"train.grad_clip": 1.0}},
                {"say": "lower the learning rate 10x", "patch": {"optim.lr": 0.001}},
            ],
        },
        {
            "code": "overfitting",
            "severity": "warning",
            "epoch": 2,
            "evidence": {"gap": 0.08},
            "causes": ["few samples"],
            "fixes": [{"say": "add augmentation", "patch": {"data.augment": ["crop:2"]}}],
        },
    ],
}


def tiny_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits-lenet for 3 epochs, trained once per session (shared with tests/evaluate)."""
    import liandan

    path = tmp_path_factory.getbasetemp() / "tiny-digits-lenet"
    if not (path / "summary.json").exists() or json.loads((path / "summary.json").read_text())["status"] == "running":
        liandan.train("digits-lenet", overrides=["train.epochs=3"], out=path, quiet=True)
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return tiny_run_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def report_run(tiny_run: Path, tmp_path_factory) -> Path:
    """A copy of the tiny run with ood.json (shapes, all methods) and a doctor.json."""
    import shutil

    from liandan.evaluation.ood import ood

    path = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(tiny_run, path, ignore=shutil.ignore_patterns("report.html", "figures", "ood.json"))
    ood(path, "shapes", "all", max_samples=300)
    (path / "doctor.json").write_text(json.dumps(DOCTOR))
    return path
