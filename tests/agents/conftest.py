"""Fixtures of the agents tests: one allowed root and one tiny trained run, shared by the folder.

The run is trained *through the MCP train tool* (so the server, the tool, its sandboxed output
directory and its recipe checks are exercised once): wine-mlp, 2 epochs, no doctor, no TensorBoard, no report.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TINY = ["doctor.enabled=false", "train.tensorboard=false", "report=false"]


@pytest.fixture(scope="session")
def agent_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("agent-root")


@pytest.fixture(scope="session")
def toolbox(agent_root):
    from liandan.agents.sandbox import Sandbox
    from liandan.agents.tools import Toolbox

    return Toolbox(Sandbox([agent_root]))


@pytest.fixture(scope="session")
def tiny_run(agent_root) -> dict:
    """The one tiny run, trained through the MCP train tool (in memory: the SDK runs it on a worker
    thread, as a real server does); returns the tool's result (``run_dir`` inside ``agent_root``)."""
    import anyio
    from mcp import Client

    from liandan.agents.mcp_server import build_server

    async def train() -> dict:
        async with Client(build_server([agent_root])) as c:
            r = await c.call_tool("train", {"recipe": "wine-mlp", "overrides": TINY, "epochs": 2, "out": "tiny"})
        assert not r.is_error, r.content
        return r.structured_content

    return anyio.run(train)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(args: list[str], port: int, cwd: Path) -> Iterator[subprocess.Popen]:
    """``python -m liandan ARGS`` as a server process, once its port accepts connections."""
    proc = subprocess.Popen([sys.executable, "-m", "liandan", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()



@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    """The planted world of the sandbox tests (tests/agents/planted.py): a root with two tiny runs
    and an outside folder of secrets."""
    from tests.agents.planted import build_world

    return build_world(tmp_path_factory.mktemp("planted"))
