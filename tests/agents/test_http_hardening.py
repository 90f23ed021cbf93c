"""The HTTP servers' shared guard (:mod:`liandan.agents.http_guard`), against real servers: ``liandan a2a``
and ``liandan mcp --http`` as subprocesses on 127.0.0.1 (an ephemeral port), each with a token, and the
same matrix of requests: foreign Host 421, foreign Origin 403, no/wrong token 401, ``text/plain`` 415,
50 MB bodies 413 (declared, and chunked: refused while streaming), the right token 200 and a working call.
Plus in-process unit tests of the guard's edge cases."""

from __future__ import annotations

import json
import select
import socket
import uuid

import pytest

from .conftest import free_port, served

TOKEN = "s3cret-" + uuid.uuid4().hex
BIG = 50 * 1024 * 1024


def _client(base: str):
    import httpx

    return httpx.Client(base_url=base, timeout=30, trust_env=False)  # trust_env=False: no proxy


def _rpc(method: str, params: dict, i: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": i, "method": method, "params": params}


def _a2a_send(data: dict, i: int = 1) -> dict:
    """A 0.3 ``message/send`` JSON-RPC body with one data part."""
    return _rpc("message/send", {"message": {"kind": "message", "messageId": f"m{i}", "role": "user",
                                             "parts": [{"kind": "data", "data": data}]}}, i)


def _raw_post(port: int, path: str, headers: dict[str, str], body_chunks: int = 0) -> int:
    """POST over a raw socket, sending a chunked body of ``body_chunks`` MiB, or, with a declared
    Content-Length, nothing of the body; stops sending as soon as the server answers. The status."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    chunk = b"%x\r\n" % (1 << 20) + b"[" * (1 << 20) + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        for _ in range(body_chunks):
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered (and stopped reading)
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        data = b""
        while b"\r\n" not in data:
            part = sock.recv(4096)
            if not part:
                break
            data += part
    return int(data.split(b" ", 2)[1])


def _matrix(port: int, path: str, body: dict, extra: dict[str, str]) -> None:
    """The refusals every guarded POST endpoint gives (a valid request but for one thing)."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with _client(f"http://127.0.0.1:{port}") as http:
        ok = {**auth, **extra}
        assert http.post(path, json=body, headers={**ok, "Host": "evil.example.com"}).status_code == 421
        assert http.post(path, json=body, headers={**ok, "Host": f"evil.example.com:{port}"}).status_code == 421
        assert http.post(path, json=body, headers={**ok, "Origin": "http://evil.example.com"}).status_code == 403
        assert http.post(path, json=body, headers={**ok, "Origin": "null"}).status_code == 403
        r = http.post(path, json=body, headers=extra)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert http.post(path, json=body, headers={**extra, "Authorization": "Bearer wrong"}).status_code == 401
        assert http.post(path, json=body, headers={**extra, "Authorization": TOKEN}).status_code == 401
        plain = http.post(path, content=json.dumps(body), headers={**ok, "Content-Type": "text/plain"})
        assert plain.status_code == 415
        form = http.post(path, content=b"a=1", headers={**ok, "Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 415
    json_headers = {**auth, **extra, "Content-Type": "application/json"}
    declared = _raw_post(port, path, {**json_headers, "Content-Length": str(BIG)})
    assert declared == 413
    streamed = _raw_post(port, path, {**json_headers, "Transfer-Encoding": "chunked"}, body_chunks=BIG >> 20)
    assert streamed == 413


def test_a2a_server_guard_matrix(tmp_path):
    port = free_port()
    body = _a2a_send({"skill": "remember", "arguments": {"text": "planted by a web page"}})
    with served(["a2a", "--root", str(tmp_path), "--port", str(port), "--token", TOKEN], port, tmp_path) as proc:
        with _client(f"http://127.0.0.1:{port}") as http:
            card = http.get("/.well-known/agent-card.json")  # discovery: no token needed
            assert card.status_code == 200
            assert card.json()["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"] == "Bearer"
            assert http.get("/.well-known/agent-card.json", headers={"Host": "evil.example.com"}).status_code == 421
        _matrix(port, "/", body, {})
        with _client(f"http://127.0.0.1:{port}") as http:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            recall = _a2a_send({"skill": "recall", "arguments": {"query": "planted web page"}}, 2)
            r = http.post("/", json=recall, headers=auth)
            assert r.status_code == 200 and r.json()["result"]["status"]["state"] == "completed"
            assert r.json()["result"]["artifacts"][0]["parts"][0]["data"]["memories"] == []  # nothing got through
            r = http.post("/", json=_a2a_send({"skill": "explain", "arguments": {"topic": "warmup"}}, 3), headers=auth)
            assert r.status_code == 200 and r.json()["result"]["status"]["state"] == "completed"
            assert "warmup" in r.json()["result"]["artifacts"][0]["parts"][0]["data"]["text"]
    out, err = proc.communicate(timeout=10)
    assert out == b"" and b"bearer token required" in err and TOKEN.encode() not in err


@pytest.mark.anyio
async def test_mcp_http_server_guard_matrix(tmp_path, monkeypatch):
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    monkeypatch.setenv("LIANDAN_TOKEN", TOKEN)  # the environment variable, inherited by the server
    port = free_port()
    body = _rpc("tools/list", {})
    extra = {"Accept": "application/json, text/event-stream"}
    with served(["mcp", "--root", str(tmp_path), "--http", "--port", str(port)], port, tmp_path) as proc:
        _matrix(port, "/mcp", body, extra)
        url = f"http://127.0.0.1:{port}/mcp"
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
            async with Client(streamable_http_client(url, http_client=http)) as c:
                assert len((await c.list_tools()).tools) >= 10
                ok = await c.call_tool("explain", {"topic": "warmup"})
                bad = await c.call_tool("explain", {"topic": "warmup", "force": True})
        assert not ok.is_error and "warmup" in ok.structured_content["text"]
        assert bad.is_error and "unknown argument 'force' for explain; allowed: topic" in bad.content[0].text
    out, err = proc.communicate(timeout=10)
    assert out == b"" and b"bearer token required" in err


# --- the guard in process -------------------------------------------------------------------------


async def _echo(scope, receive, send) -> None:
    """An app that reads the whole body and answers its length."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.anyio
@pytest.mark.parametrize("bind, headers, method, status", [
    ("127.0.0.1", {"Host": "localhost:9"}, "GET", 200),
    ("127.0.0.1", {"Host": "[::1]:8000"}, "GET", 200),
    ("127.0.0.1", {"Host": "127.0.0.1.evil.example.com"}, "GET", 421),
    ("127.0.0.1", {"Host": "localhost", "Origin": "http://localhost:3000"}, "GET", 200),
    ("127.0.0.1", {"Host": "localhost", "Origin": "https://127.0.0.1"}, "GET", 200),
    ("127.0.0.1", {"Host": "localhost", "Origin": "file://"}, "GET", 403),
    ("127.0.0.1", {"Host": "localhost", "Content-Type": "text/plain"}, "PUT", 415),
    ("127.0.0.1", {"Host": "localhost", "Content-Type": "application/json; charset=utf-8"}, "POST", 200),
    ("127.0.0.1", {"Host": "localhost", "Content-Length": "x"}, "GET", 400),
    ("10.1.2.3", {"Host": "10.1.2.3:80"}, "GET", 200),
    ("10.1.2.3", {"Host": "evil.example.com"}, "GET", 421),
    ("0.0.0.0", {"Host": "anything.example.com"}, "GET", 200),
])
async def test_guard_edge_cases(bind, headers, method, status):
    import httpx

    from liandan.agents.http_guard import HTTPGuard

    app = HTTPGuard(_echo, host=bind, max_body=1000)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as http:
        r = await http.request(method, "/", headers=headers, content=b"{}" if method != "GET" else None)
    assert r.status_code == status, r.text


@pytest.mark.anyio
async def test_guard_counts_a_streamed_body_and_exempts_only_public_paths_from_the_token():
    import httpx

    from liandan.agents.http_guard import HTTPGuard

    app = HTTPGuard(_echo, token="t", max_body=1000, public_paths=["/card"])

    async def chunks(n: int):
        for _ in range(n):
            yield b"x" * 300

    headers = {"Authorization": "Bearer t", "Content-Type": "application/json"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
        assert (await http.post("/", content=chunks(3), headers=headers)).text == "900"
        assert (await http.post("/", content=chunks(4), headers=headers)).status_code == 413
        assert (await http.get("/card")).status_code == 200
        assert (await http.get("/card", headers={"Origin": "http://evil.example.com"})).status_code == 403
        assert (await http.get("/other")).status_code == 401


def test_token_and_bind(monkeypatch):
    from liandan.agents.http_guard import check_bind, resolve_token
    from liandan.errors import LiandanError

    monkeypatch.delenv("LIANDAN_TOKEN", raising=False)
    assert resolve_token(None) is None and resolve_token("") is None and resolve_token("a") == "a"
    monkeypatch.setenv("LIANDAN_TOKEN", "env")
    assert resolve_token(None) == "env" and resolve_token("flag") == "flag"
    assert check_bind("127.0.0.1", None) is None and check_bind("::1", None) is None
    assert check_bind("localhost", None) is None
    for host in ("0.0.0.0", "10.0.0.1", "::"):
        with pytest.raises(LiandanError, match="set a token"):
            check_bind(host, None)
    assert "Host header cannot be checked" in check_bind("0.0.0.0", "t")
    assert "Host" not in check_bind("10.0.0.1", "t")


@pytest.mark.parametrize("args", [["a2a", "--host", "0.0.0.0"], ["mcp", "--http", "--host", "10.0.0.1"],
                                  ["mcp", "--token", "t"]])
def test_cli_refuses_an_exposed_bind_without_a_token_and_a_token_without_http(cli, monkeypatch, tmp_path, args):
    monkeypatch.delenv("LIANDAN_TOKEN", raising=False)
    code, out, err = cli(*args, "--root", str(tmp_path))
    assert code != 0 and out == ""
    assert ("set a token" in err) if "--host" in args else ("--token goes with --http" in err)
