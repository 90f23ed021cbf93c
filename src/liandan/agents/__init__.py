"""The agents pillar: liandan's capabilities as tools for AI agents.

- :mod:`liandan.agents.tools` — the one tool registry (:class:`Toolbox`, :data:`TOOLS`): typed
  functions returning JSON-able dicts.
- :mod:`liandan.agents.sandbox` — every client path must resolve inside the allowed roots.
- :mod:`liandan.agents.mcp_server` — :func:`build_server` (official ``mcp`` SDK, v2) and
  :func:`serve`; CLI ``liandan mcp [--root DIR]... [--http]``.
- :mod:`liandan.agents.function_calling` — OpenAI-style declarations (:func:`openai_tools`,
  strict schemas) and the dispatcher :func:`call_tool`; CLI ``liandan mcp --list-tools --json``.
- :mod:`liandan.agents.a2a_server` — liandan as an A2A agent: :func:`agent_card` (one skill per
  tool) and :func:`build_app` (``a2a-sdk``, JSON-RPC); CLI ``liandan a2a [--root DIR]... [--card]``.
- :mod:`liandan.agents.memory` — agent memory across sessions (:class:`MemoryStore`, BM25 recall),
  exposed as the ``remember`` / ``recall`` / ``forget`` tools.

Nothing heavy is imported here; the ``mcp`` and ``a2a`` packages (extra ``liandan[agents]``) are
needed only by their servers.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_API = {
    "Sandbox": "liandan.agents.sandbox",
    "SandboxError": "liandan.agents.sandbox",
    "Toolbox": "liandan.agents.tools",
    "TOOLS": "liandan.agents.tools",
    "build_server": "liandan.agents.mcp_server",
    "serve": "liandan.agents.mcp_server",
    "openai_tools": "liandan.agents.function_calling",
    "call_tool": "liandan.agents.function_calling",
    "agent_card": "liandan.agents.a2a_server",
    "build_app": "liandan.agents.a2a_server",
    "MemoryStore": "liandan.agents.memory",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'liandan.agents' has no attribute {name!r}")
    value = getattr(import_module(_API[name]), name)
    globals()[name] = value
    return value
