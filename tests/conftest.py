"""Shared fixtures. Tests run on one torch thread: small models are faster that way here, and
two test processes never fight over the two cores."""

from __future__ import annotations

import os
import sys

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("LIANDAN_HOME", os.path.join(os.environ.get("TMPDIR", "/tmp"), "liandan-test-home"))


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: returns (exit_code, stdout, stderr)."""
    from liandan.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def python() -> str:
    return sys.executable
