"""liandan as an MCP server (official ``mcp`` Python SDK, v2 API: ``mcp.server.MCPServer``).

``build_server(roots)`` registers every tool of :mod:`liandan.agents.tools`: the type hints
become each tool's ``inputSchema``, the docstring its description, and :data:`~liandan.agents.
tools.TOOLS` its annotations (``readOnlyHint`` for the tools that only read; ``train`` is
neither read-only nor idempotent, and not destructive: it only creates a new run directory).
Annotations are hints; clients must not trust them from untrusted servers (spec 2025-11-25,
``server/tools``).

Errors: a :class:`~liandan.errors.LiandanError` (a bad preset, a path outside the roots) is
raised as the SDK's ``ToolError``, so the client gets ``isError: true`` with the one-line
message; anything else is a bug: the client sees only ``Error executing tool NAME`` and the
traceback goes to the server's log on stderr.

Unknown arguments are refused (``unknown argument 'x' for TOOL; allowed: ...``), as function calling
and A2A refuse them; the SDK alone would drop them silently.

Tool calls go through a :class:`~liandan.agents.runner.ToolRunner`: a worker thread, at most
``max_concurrent`` at once and ``max_waiting`` in line (more: a "server busy" tool error), an
optional ``tool_timeout``; a call the client cancels (``notifications/cancelled``, sent by the SDK's
client on its own timeout) or that times out stops its training at the next step.

Transports (spec ``basic/transports``): stdio by default, where the server MUST NOT write
anything but MCP messages to stdout (logs go to stderr); Streamable HTTP bound to 127.0.0.1 by
default behind :class:`~liandan.agents.http_guard.HTTPGuard` (Host 421, Origin 403, bearer token 401,
JSON content type 415, body size 413), the same guard as the A2A server's.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from liandan.agents.http_guard import DEFAULT_MAX_BODY, HTTPGuard, check_bind, resolve_token
from liandan.agents.runner import DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_WAITING, ToolRunner
from liandan.agents.sandbox import Sandbox
from liandan.agents.tools import TOOLS, Toolbox, error_message

log = logging.getLogger("liandan.agents")

INSTRUCTIONS = (
    "liandan trains, evaluates, diagnoses and inspects PyTorch models. Start with list_presets / list_runs; "
    "train a preset with a few epochs (it returns run_dir), then evaluate, diagnose, ood or predict on that "
    "run_dir. Paths must lie inside the allowed directories that list_runs reports. recall what earlier "
    "sessions learned (past runs are remembered automatically) and remember what you find out."
)


def _as_tool(name: str, fn: Callable[..., Any], runner: ToolRunner) -> Callable[..., Any]:
    """Wrap a toolbox method as an async tool run by ``runner``, so user errors become ``ToolError``
    (one line, no traceback) and a cancelled call stops the tool.

    ``functools.wraps`` keeps the signature (``inspect.signature`` follows ``__wrapped__``), so
    the SDK derives the same ``inputSchema`` from the original type hints."""
    from mcp.server.mcpserver.exceptions import ToolError

    @functools.wraps(fn)
    async def tool(**kwargs: Any) -> Any:
        try:
            return await runner.run(name, fn, kwargs)
        except Exception as e:
            msg = error_message(e)
            if msg is None:
                raise  # a bug: the SDK logs the traceback and tells the client only the tool's name
            raise ToolError(msg) from None

    tool.__name__ = name
    return tool


@functools.cache
def _server_class() -> type:
    """``MCPServer`` that refuses unknown arguments and whose argument-validation errors are one line
    (``loc: msg``) instead of pydantic's multi-line report with documentation links."""
    from mcp.server import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from pydantic import ValidationError

    from liandan.agents.function_calling import ArgumentError, check_argument_names

    class LiandanMCPServer(MCPServer):
        async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
            try:
                check_argument_names(name, arguments)
            except ArgumentError as e:
                raise ToolError(f"Error executing tool {name}: {e}") from None
            try:
                return await super().call_tool(name, arguments, context)
            except ToolError as e:
                cause = e.__cause__
                if not isinstance(cause, ValidationError):
                    raise
                err = cause.errors()[0]
                loc = ".".join(str(x) for x in err["loc"]) or "arguments"
                raise ToolError(f"Error executing tool {name}: invalid arguments: {loc}: {err['msg']}") from cause

    return LiandanMCPServer


def build_server(roots: Iterable[str | os.PathLike[str]] | Sandbox | None = None, *, name: str = "liandan",
                 tool_timeout: float | None = None, max_concurrent: int = DEFAULT_MAX_CONCURRENT,
                 max_waiting: int = DEFAULT_MAX_WAITING) -> Any:
    """An ``MCPServer`` exposing liandan's tools, sandboxed to ``roots`` (default ``./runs``, created).

    ``tool_timeout`` (seconds; None: none) stops a call that runs longer; ``max_concurrent`` calls
    run at once and ``max_waiting`` more wait, beyond that a call is refused as busy. Also a resource
    template ``liandan://runs/{run}/summary`` (a run's summary.json) for the runs directly under the
    first root."""
    from mcp.server.mcpserver.exceptions import ResourceError
    from mcp_types import ToolAnnotations

    import liandan

    sandbox = roots if isinstance(roots, Sandbox) else Sandbox(roots)
    box = Toolbox(sandbox)
    server = _server_class()(name, instructions=INSTRUCTIONS, version=liandan.__version__)
    runner = ToolRunner(max_concurrent=max_concurrent, max_waiting=max_waiting, timeout=tool_timeout)
    fns = box.functions()
    for info in TOOLS:
        ann = ToolAnnotations(title=info.title, read_only_hint=info.read_only,
                              destructive_hint=None if info.read_only else info.destructive,
                              idempotent_hint=None if info.read_only else info.idempotent,
                              open_world_hint=False)
        server.add_tool(_as_tool(info.name, fns[info.name], runner), name=info.name, title=info.title, annotations=ann)

    @server.resource("liandan://runs/{run}/summary", name="run-summary", mime_type="application/json",
                     description="summary.json of a run directly under the first allowed root")
    def run_summary(run: str) -> str:
        # Servers MUST validate all resource URIs (spec server/resources): one path component only,
        # then the sandbox like every path.
        if not run or "/" in run or "\\" in run or run in (".", ".."):
            raise ResourceError(f"invalid run name {run!r}")
        try:
            path = sandbox.run_dir(run)
        except Exception as e:
            raise ResourceError(error_message(e) or "invalid run") from None
        summ = path / "summary.json"
        if not summ.is_file():
            raise ResourceError(f"run {run!r} has no summary.json")
        try:  # checked when opened: a summary.json linked out of the roots is refused, never read
            return json.dumps(json.loads(sandbox.read_text(summ, "run file")), indent=2)
        except Exception as e:
            raise ResourceError(error_message(e) or "unreadable summary.json") from None

    server.toolbox = box  # type: ignore[attr-defined]  (tests and embedders reach the sandbox)
    server.runner = runner  # type: ignore[attr-defined]
    return server


def http_app(server: Any, *, host: str = "127.0.0.1", token: str | None = None,
             max_body: int = DEFAULT_MAX_BODY) -> HTTPGuard:
    """The Streamable HTTP ASGI app (``/mcp``) of ``server`` behind the shared :class:`HTTPGuard`.

    The SDK keeps its own checks behind ours (they never fire first); its body limit is set to ours."""
    return HTTPGuard(server.streamable_http_app(host=host, max_request_body_size=max_body), host=host,
                     token=token, max_body=max_body)


def serve(roots: Iterable[str] | None = None, *, http: bool = False, host: str = "127.0.0.1", port: int = 8000,
          log_level: str = "WARNING", token: str | None = None, tool_timeout: float | None = None,
          max_concurrent: int = DEFAULT_MAX_CONCURRENT, max_body: int = DEFAULT_MAX_BODY) -> None:
    """Run the server: stdio (default) or Streamable HTTP on ``host:port`` at ``/mcp``.

    ``token`` (HTTP only; default ``$LIANDAN_TOKEN``) makes every HTTP request need
    ``Authorization: Bearer TOKEN``. Logging goes to stderr only. For stdio the SDK serves the
    protocol from a private duplicate of file descriptor 1 and points fd 1 at stderr while it runs,
    so a stray ``print`` in a library lands on stderr instead of corrupting the protocol stream
    (tests/agents check stdout)."""
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.WARNING), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    if http:
        token = resolve_token(token)
        if (warning := check_bind(host, token)) is not None:  # no token off loopback: refused
            log.warning("%s", warning)
    server = build_server(roots, tool_timeout=tool_timeout, max_concurrent=max_concurrent)
    roots_text = ", ".join(server.toolbox.sandbox.roots)
    if http:
        auth = "bearer token required" if token else "no token"
        print(f"liandan MCP server on http://{host}:{port}/mcp ({auth}; roots: {roots_text})", file=sys.stderr,
              flush=True)
        import uvicorn

        # As MCPServer.run(transport="streamable-http"), but behind the guard and with log_config=None:
        # uvicorn's own loggers (access log included, which it would print on stdout) propagate to the
        # stderr handler above.
        app = http_app(server, host=host, token=token, max_body=max_body)
        uvicorn.run(app, host=host, port=port, log_config=None, log_level=log_level.lower())
        return
    log.info("liandan MCP server on stdio (roots: %s)", roots_text)
    server.run()
