"""One request guard for liandan's HTTP servers (``liandan mcp --http`` and ``liandan a2a``).

:class:`HTTPGuard` is plain ASGI middleware put in front of either app. In order, for every HTTP request:

1. ``Host`` must name an allowed host (a loopback name, any port, plus the bind address when it is a
   specific one): else **421** Misdirected Request. This is the DNS-rebinding defence: a web page whose
   name resolves to 127.0.0.1 still sends its own name as ``Host``.
2. ``Origin``, when present, must be ``http(s)://`` one of those hosts: else **403**. Browsers send it
   on cross-site requests; command-line and SDK clients send none.
3. With a token (``--token`` or ``LIANDAN_TOKEN``): ``Authorization: Bearer TOKEN`` (compared with
   :func:`hmac.compare_digest`), else **401** with ``WWW-Authenticate: Bearer``. Paths in
   ``public_paths`` (the A2A agent card: discovery, see :mod:`liandan.agents.a2a_server`) skip only this step.
4. ``POST``/``PUT``/``PATCH`` must be ``Content-Type: application/json``: else **415**. A ``text/plain``
   POST is a CORS "simple request" a browser sends cross-site without a preflight.
5. The body may hold at most ``max_body`` bytes: a larger ``Content-Length`` is **413** at once; a body
   without one (chunked) is counted while the app reads it, and the moment it passes the limit the
   guard answers 413 and tells the app the client went away (nothing is buffered here).

A wildcard bind (``0.0.0.0``, ``::``) cannot know its own name: the Host check is then off unless
``allowed_hosts`` is given. :func:`check_bind` refuses any bind but loopback without a token.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from liandan.errors import LiandanError

log = logging.getLogger("liandan.agents")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_ENV = "LIANDAN_TOKEN"
DEFAULT_MAX_BODY = 4 * 1024 * 1024  # 4 MiB, as the MCP SDK's own default; tool arguments are small
LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::", "")
BODY_METHODS = ("POST", "PUT", "PATCH")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a Host-header name) is this machine only."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(token: str | None) -> str | None:
    """The bearer token: ``token`` if given (``--token``), else ``$LIANDAN_TOKEN``; None if neither or empty."""
    value = token if token is not None else os.environ.get(TOKEN_ENV)
    return value or None


def check_bind(host: str, token: str | None) -> str | None:
    """Refuse a bind that other machines can reach without a token (:class:`LiandanError`); for one
    with a token, the warning to log (None for a loopback bind)."""
    if is_loopback(host):
        return None
    if not token:
        raise LiandanError(f"binding to {host} makes the server reachable from the network: set a token "
                           f"(--token or {TOKEN_ENV}), or keep --host 127.0.0.1")
    warning = f"binding to {host}: the server is reachable from the network (bearer token required)"
    if host in WILDCARD:
        warning += "; the Host header cannot be checked on a wildcard bind (DNS rebinding)"
    return warning


def _split_host(value: str) -> str:
    """The host name of a ``Host`` header value (``[::1]:8000`` -> ``::1``, ``a.b:80`` -> ``a.b``)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


class HTTPGuard:
    """ASGI middleware: Host, Origin, bearer token, JSON content type and body size (module docstring)."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", token: str | None = None,
                 max_body: int = DEFAULT_MAX_BODY, allowed_hosts: Iterable[str] | None = None,
                 public_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body = int(max_body)
        if allowed_hosts is not None:
            hosts: set[str] | None = {_split_host(h) for h in allowed_hosts}
        elif host in WILDCARD:
            hosts = None  # any Host: a wildcard bind has no one name
        else:
            hosts = {*LOOPBACK, host.strip("[]").lower()}
        self.allowed_hosts = hosts
        self.public_paths = frozenset(public_paths)
        self.state = getattr(app, "state", None)  # a Starlette app's state, for embedders and tests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan (and websockets, which neither server serves)
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await _reply(send, *refusal)
            return
        await self._limited(scope, receive, send)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, dict[str, str]] | None:
        """(status, message, extra headers) for a request refused on its headers; None to let it through."""
        if self.allowed_hosts is not None and _split_host(headers.get("host", "")) not in self.allowed_hosts:
            log.warning("refused a request with Host %r", headers.get("host"))
            return 421, "Misdirected request: Host header not allowed", {}
        origin = headers.get("origin")
        if origin is not None and not self._origin_ok(origin):
            log.warning("refused a request with Origin %r", origin)
            return 403, "Forbidden: Origin not allowed", {}
        if self.token is not None and scope.get("path", "") not in self.public_paths:
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token):
                return 401, "Unauthorized: bearer token missing or wrong", {
                    "www-authenticate": 'Bearer realm="liandan"'}
        method = scope.get("method", "GET").upper()
        if method in BODY_METHODS:
            ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if ctype != "application/json":
                return 415, "Unsupported media type: send Content-Type: application/json", {}
        length = headers.get("content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_body
            except ValueError:
                return 400, "Bad request: invalid Content-Length", {}
            if too_big:
                return 413, f"Request body too large (limit {self.max_body} bytes)", {}
        return None

    def _origin_ok(self, origin: str) -> bool:
        scheme, sep, rest = origin.strip().lower().partition("://")
        if not sep or scheme not in ("http", "https"):
            return False  # includes Origin: null (sandboxed frames, file: pages)
        return self.allowed_hosts is None or _split_host(rest.split("/", 1)[0]) in self.allowed_hosts

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, counting body bytes as it reads them: past ``max_body``, answer 413 and
        tell the app the client disconnected; drop whatever the app sends after that."""
        received = 0
        refused = started = False

        async def guarded_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    refused = True
                    log.warning("refused a request body over %d bytes", self.max_body)
                    if not started:
                        await _reply(send, 413, f"Request body too large (limit {self.max_body} bytes)")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if not refused:
                started = True
                await send(message)

        await self.app(scope, guarded_receive, guarded_send)


async def _reply(send: Send, status: int, message: str, extra: dict[str, str] | None = None) -> None:
    """A small JSON error response: ``{"error": message}``."""
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *((k.encode(), v.encode()) for k, v in (extra or {}).items())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

