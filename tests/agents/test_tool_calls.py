"""How the servers run tool calls (:mod:`liandan.agents.runner`, :mod:`liandan.agents.cancel`): a cancelled
or timed-out call stops its training (MCP, A2A, function calling), the line of waiting calls is bounded,
and MCP refuses unknown arguments as function calling and A2A do."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest

from .conftest import TINY

pytestmark = pytest.mark.anyio
EPOCHS = 100_000  # wine-mlp: ~8 steps an epoch, hours of training if nothing stops it


def _train_args(out: str) -> dict:
    return {"recipe": "wine-mlp", "overrides": TINY, "epochs": EPOCHS, "out": out}


def _assert_stopped(run_dir: Path, toolbox) -> dict:
    """The run ended ``interrupted`` after a small part of what it asked, and nothing trains any more."""
    assert not toolbox._lock.locked()  # held for the whole liandan.train call: training has returned
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["reason"].startswith("cancelled")
    assert 0 < summary["epochs"] < EPOCHS // 100
    assert not _training_threads()
    time.sleep(0.3)
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == summary["steps"]  # no more steps
    return summary


def _training_threads() -> list[int]:
    """Ids of the threads now inside liandan's training code."""
    return [tid for tid, frame in sys._current_frames().items()
            if any(f"liandan{os.sep}train{os.sep}" in f.f_code.co_filename for f, _ in traceback.walk_stack(frame))]


async def _wait_for(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_mcp_client_timeout_cancels_training(tmp_path):
    """The SDK's client times out, sends ``notifications/cancelled``: the server stops the training."""
    from mcp import Client
    from mcp.shared.exceptions import MCPError

    from liandan.agents.mcp_server import build_server

    server = build_server([tmp_path])
    async with Client(server) as c:
        with pytest.raises(MCPError, match="Timed out"):
            await c.call_tool("train", _train_args("cancelled"), read_timeout_seconds=4)
        after = await c.call_tool("list_runs", {})  # the server still serves
    assert not after.is_error
    _assert_stopped(tmp_path / "cancelled", server.toolbox)


@pytest.mark.slow
async def test_mcp_tool_timeout_stops_training(tmp_path):
    from mcp import Client

    from liandan.agents.mcp_server import build_server

    server = build_server([tmp_path], tool_timeout=3)
    async with Client(server) as c:
        r = await c.call_tool("train", _train_args("timed-out"))
    text = r.content[0].text
    assert r.is_error and "train timed out after 3 s and was stopped" in text and "status interrupted" in text
    _assert_stopped(tmp_path / "timed-out", server.toolbox)


async def test_mcp_rejects_unknown_arguments(tmp_path):
    from mcp import Client

    from liandan.agents.mcp_server import build_server

    async with Client(build_server([tmp_path])) as c:
        one = await c.call_tool("summary", {"model": "lenet5", "evil": 1})
        two = await c.call_tool("train", {"recipe": "wine-mlp", "epoch": 1, "lr": 0.1})
        ok = await c.call_tool("explain", {"topic": "warmup"})
    assert one.is_error and one.content[0].text == (
        "Error executing tool summary: unknown argument 'evil' for summary; allowed: model, input_shape, options, "
        "layers")
    assert two.is_error and "unknown arguments 'epoch', 'lr' for train; allowed: recipe, overrides, epochs, out" in (
        two.content[0].text)
    assert not ok.is_error
    assert not (tmp_path / "wine-mlp").exists() and not list(tmp_path.iterdir())  # nothing ran


def test_function_calling_and_a2a_name_unknown_arguments_alike():
    from liandan.agents.function_calling import call_tool

    err = json.loads(call_tool("summary", {"model": "lenet5", "evil": 1}))["error"]
    assert err == "unknown argument 'evil' for summary; allowed: model, input_shape, options, layers"


def _a2a(app):
    import httpx
    from a2a.client import ClientConfig, ClientFactory

    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:9999")
    return http, ClientFactory(ClientConfig(httpx_client=http, streaming=False))


def _message(data: dict):
    from a2a.helpers import new_data_part
    from a2a.types import Message, Role

    return Message(role=Role.ROLE_USER, message_id="m-1", parts=[new_data_part(data)])


async def test_a2a_cancel_task_stops_training_before_the_reply(tmp_path):
    from a2a.types import CancelTaskRequest, GetTaskRequest, SendMessageConfiguration, SendMessageRequest, TaskState

    from liandan.agents.a2a_server import build_app

    app = build_app([tmp_path])
    http, factory = _a2a(app)
    async with http:
        client = await factory.create_from_url("http://127.0.0.1:9999")
        request = SendMessageRequest(message=_message({"skill": "train", "arguments": _train_args("a2a")}),
                                     configuration=SendMessageConfiguration(return_immediately=True))
        (event,) = [e async for e in client.send_message(request)]
        await _wait_for(tmp_path / "a2a" / "metrics.csv")  # training has started
        task = await client.cancel_task(CancelTaskRequest(id=event.task.id))
        assert task.status.state == TaskState.TASK_STATE_CANCELED
        _assert_stopped(tmp_path / "a2a", app.state.toolbox)  # already when the reply came
        task = await client.get_task(GetTaskRequest(id=event.task.id))
        assert task.status.state == TaskState.TASK_STATE_CANCELED and not task.artifacts


@pytest.mark.slow
async def test_a2a_tool_timeout_fails_the_task_and_stops_training(tmp_path):
    from a2a.helpers import get_message_text
    from a2a.types import SendMessageRequest, TaskState

    from liandan.agents.a2a_server import build_app

    app = build_app([tmp_path], tool_timeout=3)
    http, factory = _a2a(app)
    async with http:
        client = await factory.create_from_url("http://127.0.0.1:9999")
        msg = _message({"skill": "train", "arguments": _train_args("a2a-timeout")})
        (event,) = [e async for e in client.send_message(SendMessageRequest(message=msg))]
    assert event.task.status.state == TaskState.TASK_STATE_FAILED
    assert "train timed out after 3 s and was stopped" in get_message_text(event.task.status.message)
    _assert_stopped(tmp_path / "a2a-timeout", app.state.toolbox)


@pytest.mark.slow
def test_function_calling_cancel_event_stops_training(tmp_path):
    from liandan.agents.function_calling import call_tool
    from liandan.agents.sandbox import Sandbox
    from liandan.agents.tools import Toolbox

    box = Toolbox(Sandbox([tmp_path]), auto_remember=False)
    cancel = threading.Event()
    timer = threading.Timer(3, cancel.set)
    timer.start()
    try:
        result = json.loads(call_tool("train", _train_args("fc"), box, cancel=cancel))
    finally:
        timer.cancel()
    assert result["status"] == "interrupted"
    assert _assert_stopped(tmp_path / "fc", box)["steps"] == result["steps"]


async def test_runner_bounds_the_line_of_calls():
    from liandan.agents.runner import ServerBusy, ToolRunner

    runner = ToolRunner(max_concurrent=1, max_waiting=1)
    release = threading.Event()
    started = threading.Semaphore(0)

    def work(i: int) -> int:
        started.release()
        release.wait(30)
        return i

    first = asyncio.ensure_future(runner.run("work", work, {"i": 1}))
    await asyncio.to_thread(started.acquire)  # running
    second = asyncio.ensure_future(runner.run("work", work, {"i": 2}))  # waiting in line
    await asyncio.sleep(0.05)
    with pytest.raises(ServerBusy, match="server busy: 1 tool calls running and 1 waiting"):
        await runner.run("work", work, {"i": 3})
    release.set()
    assert await first == 1 and await second == 2
    assert await runner.run("work", work, {"i": 4}) == 4  # room again


async def test_runner_cancel_sets_the_event_and_waits_for_the_thread():
    from liandan.agents.cancel import cancel_requested
    from liandan.agents.runner import ToolRunner

    seen: list[bool] = []
    running = threading.Event()

    def poll() -> None:
        running.set()
        while not cancel_requested():
            time.sleep(0.01)
        time.sleep(0.2)  # winding down takes a while: the cancelled call waits for it
        seen.append(True)

    call = asyncio.ensure_future(ToolRunner().run("poll", poll))
    await asyncio.to_thread(running.wait, 10)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert seen == [True]
