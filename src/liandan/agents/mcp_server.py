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

Transports (spec ``basic/transports``): stdio by default, where the server MUST NOT write
anything but MCP messages to stdout (logs go to stderr); Streamable HTTP bound to 127.0.0.1 by
default, where the SDK validates ``Host``/``Origin`` against localhost (DNS-rebinding
protection) unless another host is given.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from liandan.agents.sandbox import Sandbox
from liandan.agents.tools import TOOLS, Toolbox, error_message

log = logging.getLogger("liandan.agents")

INSTRUCTIONS = (
    "liandan trains, evaluates, diagnoses and inspects PyTorch models. Start with list_presets / list_runs; "
    "train a preset with a few epochs (it returns run_dir), then evaluate, diagnose, ood or predict on that "
    "run_dir. Paths must lie inside the allowed directories that list_runs reports. recall what earlier "
    "sessions learned (past runs are remembered automatically) and remember what you find out."
)


def _as_tool(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a toolbox method so user errors become ``ToolError`` (one line, no traceback).

    ``functools.wraps`` keeps the signature (``inspect.signature`` follows ``__wrapped__``), so
    the SDK derives the same ``inputSchema`` from the original type hints."""
    from mcp.server.mcpserver.exceptions import ToolError

    @functools.wraps(fn)
    def tool(**kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except Exception as e:
            msg = error_message(e)
            if msg is None:
                raise  # a bug: the SDK logs the traceback and tells the client only the tool's name
            raise ToolError(msg) from None

    tool.__name__ = name
    return tool


@functools.cache
def _server_class() -> type:
    """``MCPServer`` whose argument-validation errors are one line (``loc: msg``) instead of
    pydantic's multi-line report with documentation links."""
    from mcp.server import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from pydantic import ValidationError

    class LiandanMCPServer(MCPServer):
        async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
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


def build_server(roots: Iterable[str | os.PathLike[str]] | Sandbox | None = None, *, name: str = "liandan") -> Any:
    """An ``MCPServer`` exposing liandan's tools, sandboxed to ``roots`` (default ``./runs``, created).

    Also a resource template ``liandan://runs/{run}/summary`` (a run's summary.json) for the runs
    directly under the first root."""
    from mcp.server.mcpserver.exceptions import ResourceError
    from mcp_types import ToolAnnotations

    import liandan

    sandbox = roots if isinstance(roots, Sandbox) else Sandbox(roots)
    box = Toolbox(sandbox)
    server = _server_class()(name, instructions=INSTRUCTIONS, version=liandan.__version__)
    fns = box.functions()
    for info in TOOLS:
        ann = ToolAnnotations(title=info.title, read_only_hint=info.read_only,
                              destructive_hint=None if info.read_only else info.destructive,
                              idempotent_hint=None if info.read_only else info.idempotent,
                              open_world_hint=False)
        server.add_tool(_as_tool(info.name, fns[info.name]), name=info.name, title=info.title, annotations=ann)

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
        return json.dumps(json.loads(summ.read_text()), indent=2)

    server.toolbox = box  # type: ignore[attr-defined]  (tests and embedders reach the sandbox)
    return server


def serve(roots: Iterable[str] | None = None, *, http: bool = False, host: str = "127.0.0.1", port: int = 8000,
          log_level: str = "WARNING") -> None:
    """Run the server: stdio (default) or Streamable HTTP on ``host:port`` at ``/mcp``.

    Logging goes to stderr only. For stdio the SDK serves the protocol from a private duplicate of
    file descriptor 1 and points fd 1 at stderr while it runs, so a stray ``print`` in a library
    lands on stderr instead of corrupting the protocol stream (tests/agents check stdout)."""
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.WARNING), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    server = build_server(roots)
    roots_text = ", ".join(server.toolbox.sandbox.roots)
    if http:
        if host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("binding to %s: the server is reachable from the network and has no authentication", host)
        print(f"liandan MCP server on http://{host}:{port}/mcp (roots: {roots_text})", file=sys.stderr, flush=True)
        import uvicorn

        # As MCPServer.run(transport="streamable-http"), but with log_config=None: uvicorn's own
        # loggers (access log included, which it would print on stdout) propagate to the stderr
        # handler above. The app keeps the SDK's Host/Origin checks for a localhost bind.
        app = server.streamable_http_app(host=host)
        uvicorn.run(app, host=host, port=port, log_config=None, log_level=log_level.lower())
        return
    log.info("liandan MCP server on stdio (roots: %s)", roots_text)
    server.run()
