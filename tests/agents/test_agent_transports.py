"""Smoke tests of the real transports: ``python -m liandan mcp`` as a subprocess, driven by the SDK's
stdio client. stdout must carry MCP messages only (spec basic/transports: the server MUST NOT
write anything to stdout that is not a valid MCP message)."""

from __future__ import annotations

import os
import sys

import pytest

pytestmark = pytest.mark.anyio


async def test_stdio_server_lists_tools_and_keeps_stdout_clean(tmp_path, monkeypatch):
    import mcp.client.stdio as stdio
    from mcp import Client, StdioServerParameters

    from liandan.agents.tools import TOOLS

    lines: list[object] = []
    parse = stdio._parse_line

    def spy(line: str):  # every line the server writes to stdout goes through here
        parsed = parse(line)
        lines.append(parsed)
        return parsed

    monkeypatch.setattr(stdio, "_parse_line", spy)
    root = tmp_path / "root"
    root.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "liandan", "mcp", "--root", str(root)],
                                   env=env, cwd=str(tmp_path))
    async with Client(params, read_timeout_seconds=60) as c:
        names = [t.name for t in (await c.list_tools()).tools]
        ok = await c.call_tool("explain", {"topic": "warmup"})
        bad = await c.call_tool("evaluate", {"run_dir": "/etc"})
        runs = await c.call_tool("list_runs", {})
    assert names == [t.name for t in TOOLS]
    assert not ok.is_error and "warmup" in ok.structured_content["text"]
    assert bad.is_error and "outside the allowed directories" in bad.content[0].text
    assert runs.structured_content["roots"] == [str(root.resolve())]
    assert len(lines) >= 4 and not any(isinstance(x, Exception) for x in lines), lines
    assert not (tmp_path / "runs").exists()  # --root given: no default ./runs is created


async def test_streamable_http_on_localhost(tmp_path):
    """``liandan mcp --http``: 127.0.0.1, tools over Streamable HTTP, a foreign Host header refused
    (DNS-rebinding protection), and nothing on stdout (uvicorn's logs go to stderr)."""
    import json
    import urllib.error
    import urllib.request

    from mcp import Client

    from .conftest import free_port, served

    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with served(["mcp", "--root", str(tmp_path), "--http", "--port", str(port)], port, tmp_path) as proc:
        async with Client(url) as c:
            assert len((await c.list_tools()).tools) >= 10
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
        req = urllib.request.Request(url, data=body, method="POST", headers={
            "Host": "evil.example.com", "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=5)  # no proxy
        assert info.value.code == 421
    out, err = proc.communicate(timeout=10)
    assert out == b"" and f"127.0.0.1:{port}/mcp".encode() in err
