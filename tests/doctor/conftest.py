"""Shared doctor fixtures: the quick bench subset (one faulty case per rule plus three healthy
recipes, ~1 s each) trained once per session — at the recipes' seeds, and once more with every
seed shifted by one, so no verdict hangs on one trajectory (quick cases keep their verdict with
a margin ≥ 2× over seeds and thread counts: bench/doctor_margins.py); rule errors raise instead
of being swallowed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ["LIANDAN_DOCTOR_STRICT"] = "1"


def _quick_bench(root: Path, seed_offset: int) -> dict[str, Any]:
    from liandan.doctor.bench import run_bench

    doc = run_bench(quick=True, repair=False, out=root, memory=root / "memory.db", seed_offset=seed_offset)
    return {"root": root, "doc": doc, "results": {r["name"]: r for r in doc["results"]}}


@pytest.fixture(scope="session")
def quick_bench(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """{"root": Path, "results": {case name: result}, "doc": run_bench's document}."""
    return _quick_bench(tmp_path_factory.mktemp("doctor-bench"), 0)


@pytest.fixture(scope="session")
def quick_bench_seed1(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same with every recipe's seed + 1 (another split, init and data order)."""
    return _quick_bench(tmp_path_factory.mktemp("doctor-bench-seed1"), 1)


def run_dir(quick_bench: dict[str, Any], case: str) -> Path:
    return quick_bench["root"] / case / "round-0"
