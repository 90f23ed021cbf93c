"""``liandan mcp`` / ``liandan a2a``: serve liandan's tools to AI agents over MCP or A2A, or print them
as function declarations / the A2A agent card.

Thin over :mod:`liandan.agents`; the ``mcp`` and ``a2a`` SDKs and torch are imported inside the verbs.
"""

from __future__ import annotations

from pathlib import Path

import typer

from liandan.cli.app import app, print_json
from liandan.errors import LiandanError

_ROOT_HELP = ("Allowed directory for every path a client passes (repeatable; the first takes new runs and "
              "relative paths). Default: ./runs (created).")
_TOKEN_HELP = ("Require 'Authorization: Bearer TOKEN' on every HTTP request (401 otherwise). Default: "
               "$LIANDAN_TOKEN (preferred: a flag is visible to other users in the process list).")
_TIMEOUT_HELP = "Stop a tool call after this many seconds (training stops at its next step); 0: no limit."
_CONCURRENT_HELP = ("Tool calls run at once (more wait in line, up to 16; beyond that a call is refused "
                    "as busy).")


@app.command("mcp")
def mcp_cmd(
    root: list[Path] = typer.Option(None, "--root", metavar="DIR", help=_ROOT_HELP),
    http: bool = typer.Option(False, "--http", help="Serve Streamable HTTP at http://HOST:PORT/mcp instead of stdio."),
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST",
                             help="HTTP bind address (keep 127.0.0.1; another needs a token)."),
    port: int = typer.Option(8000, "--port", metavar="PORT", help="HTTP port."),
    token: str = typer.Option(None, "--token", metavar="TOKEN", help=_TOKEN_HELP),
    tool_timeout: float = typer.Option(0.0, "--tool-timeout", metavar="SECONDS", help=_TIMEOUT_HELP),
    max_concurrent: int = typer.Option(4, "--max-concurrent", metavar="N", min=1, help=_CONCURRENT_HELP),
    log_level: str = typer.Option("WARNING", "--log-level", metavar="LEVEL",
                                  help="Server log level (logs go to stderr)."),
    list_tools: bool = typer.Option(False, "--list-tools", help="Print the tools and exit (no server)."),
    api: str = typer.Option("chat", "--api", metavar="chat|responses",
                            help="With --list-tools --json: Chat Completions or Responses API declaration shape."),
    json_: bool = typer.Option(False, "--json", help="With --list-tools: OpenAI function-calling declarations "
                               "(strict schemas) as one JSON document."),
) -> None:
    """Serve liandan's tools (train, evaluate, ood, summary, diagnose, predict, generate, ...) over MCP.

    stdio by default (for an MCP client that launches `liandan mcp`); stdout carries only the
    protocol, logs go to stderr. Paths outside the --root directories are refused. --http checks
    Host and Origin, takes JSON bodies up to 4 MiB only and, with a token, 'Authorization: Bearer'."""
    if json_ and not list_tools:
        raise LiandanError("--json goes with --list-tools (the server itself speaks JSON-RPC)")
    if list_tools:
        from liandan.agents.function_calling import openai_tools

        if api not in ("chat", "responses"):
            raise LiandanError(f"--api must be chat or responses; got {api!r}")
        decls = openai_tools(api)  # type: ignore[arg-type]
        if json_:
            print_json(decls)
            return
        from liandan.agents.tools import TOOLS

        for info in TOOLS:
            mode = "read-only" if info.read_only else "writes"
            typer.echo(f"{info.name:<14}{mode:<11}{info.title}")
        return
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise LiandanError("the MCP server needs the agents extra: pip install 'liandan[agents]'") from None
    from liandan.agents.mcp_server import serve

    if token and not http:
        raise LiandanError("--token goes with --http (a stdio server is private to the client that started it)")
    serve([str(r) for r in root] if root else None, http=http, host=host, port=port, log_level=log_level,
          token=token, tool_timeout=tool_timeout or None, max_concurrent=max_concurrent)


@app.command("a2a")
def a2a_cmd(
    root: list[Path] = typer.Option(None, "--root", metavar="DIR", help=_ROOT_HELP),
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST",
                             help="Bind address (keep 127.0.0.1; another needs a token)."),
    port: int = typer.Option(9999, "--port", metavar="PORT", help="HTTP port."),
    token: str = typer.Option(None, "--token", metavar="TOKEN", help=_TOKEN_HELP + " The agent card stays "
                              "readable without it (A2A discovery) and declares the Bearer scheme."),
    tool_timeout: float = typer.Option(0.0, "--tool-timeout", metavar="SECONDS", help=_TIMEOUT_HELP),
    max_concurrent: int = typer.Option(4, "--max-concurrent", metavar="N", min=1, help=_CONCURRENT_HELP),
    card: bool = typer.Option(False, "--card", help="Print the agent card (JSON) and exit (no server)."),
    log_level: str = typer.Option("WARNING", "--log-level", metavar="LEVEL",
                                  help="Server log level (logs go to stderr)."),
) -> None:
    """Serve liandan as an A2A agent: one skill per tool, JSON-RPC at http://HOST:PORT/.

    The agent card is at /.well-known/agent-card.json. Send a message whose data part is
    {"skill": NAME, "arguments": {...}}; the result comes back as a task artifact. Paths outside the
    --root directories are refused. Host and Origin are checked, bodies are JSON up to 4 MiB and, with
    a token, need 'Authorization: Bearer'. CancelTask stops a running training at its next step."""
    try:
        import a2a  # noqa: F401
    except ImportError:
        raise LiandanError("the A2A server needs the agents extra: pip install 'liandan[agents]'") from None
    from liandan.agents import a2a_server

    if card:
        from liandan.agents.http_guard import resolve_token

        url = a2a_server.base_url(host, port)
        print_json(a2a_server.card_dict(a2a_server.agent_card(url, bearer=bool(resolve_token(token)))))
        return
    a2a_server.serve([str(r) for r in root] if root else None, host=host, port=port, log_level=log_level,
                     token=token, tool_timeout=tool_timeout or None, max_concurrent=max_concurrent)
