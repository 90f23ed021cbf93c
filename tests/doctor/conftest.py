"""Shared doctor fixtures: the quick bench subset (one faulty case per rule plus three healthy
recipes, ~1 s each) trained once per session; rule errors raise instead of being swallowed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ["LIANDAN_DOCTOR_STRICT"] = "1"


@pytest.fixture(scope="session")
def quick_bench(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """{"root": Path, "results": {case name: result}, "doc": run_bench's document}."""
    from liandan.doctor.bench import run_bench

    root = tmp_path_factory.mktemp("doctor-bench")
    doc = run_bench(quick=True, repair=False, out=root, memory=root / "memory.db")
    return {"root": root, "doc": doc, "results": {r["name"]: r for r in doc["results"]}}


def run_dir(quick_bench: dict[str, Any], case: str) -> Path:
    return quick_bench["root"] / case / "round-0"
