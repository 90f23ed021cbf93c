"""liandan as an A2A agent (Agent2Agent protocol 1.0, ``a2a-sdk`` 1.x; a2aproject/A2A ``specification/a2a.proto``).

- :func:`agent_card` — the **AgentCard** served at ``/.well-known/agent-card.json``: name, description,
  version, one JSON-RPC interface, capabilities (no streaming, no push notifications: every skill
  answers in one reply), default input/output modes ``text/plain`` and ``application/json``, and one
  **AgentSkill** per tool of :data:`~liandan.agents.tools.TOOLS` (id = tool name).
- :func:`make_executor` — the ``AgentExecutor`` (``LiandanExecutor``). The user message names a skill and its
  arguments as a data part ``{"skill": NAME, "arguments": {...}}`` (or a text part holding that
  JSON). The task goes SUBMITTED → WORKING → COMPLETED with one **Artifact** (name = the skill,
  one data part = the tool's JSON result; a data part is a ``google.protobuf.Value``, so whole
  numbers arrive as JSON numbers such as ``61706.0``). A request that names no known skill or has arguments
  outside the skill's schema is REJECTED (nothing ran); a user error of the tool (a
  :class:`~liandan.errors.LiandanError`, e.g. a path outside the roots) ends FAILED; either way the
  status message is the one-line reason, never a traceback. Tools are sandboxed exactly as for
  MCP: the same :class:`~liandan.agents.tools.Toolbox` over the same roots, run by a
  :class:`~liandan.agents.runner.ToolRunner` (bounded concurrency: a call beyond the line is REJECTED as
  busy; an optional timeout ends the task FAILED). ``CancelTask`` is supported: the task ends CANCELED
  and a running training stops at its next step (status ``interrupted``) before the reply.
- :func:`build_app` — a Starlette app: the card route plus the JSON-RPC route at ``/`` (method
  ``SendMessage`` with header ``A2A-Version: 1.0``; the 0.3 names such as ``message/send`` through
  the SDK's compatibility adapter), tasks kept in memory, behind the
  :class:`~liandan.agents.http_guard.HTTPGuard` that ``liandan mcp --http`` uses too (Host 421,
  Origin 403, bearer token 401, JSON content type 415, body size 413); :func:`serve` runs it with
  uvicorn on 127.0.0.1 by default.
- Token and card: with a token (``--token`` / ``LIANDAN_TOKEN``) every request needs
  ``Authorization: Bearer TOKEN`` except ``GET /.well-known/agent-card.json``. That is the A2A
  convention: the public card is the discovery document (clients read the card to learn *how* to
  authenticate), so it declares an HTTP ``Bearer`` security scheme and requirement instead of hiding
  behind it; the card holds no secret (skills and their examples only). Host/Origin checks still apply.

The ``a2a`` package (extra ``liandan[agents]``) is imported inside the functions only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
from collections.abc import Iterable
from typing import Any

from liandan.agents.http_guard import DEFAULT_MAX_BODY, HTTPGuard, check_bind, resolve_token
from liandan.agents.runner import DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_WAITING, STOP_GRACE_S, ServerBusy, ToolRunner
from liandan.agents.sandbox import Sandbox
from liandan.agents.tools import TOOLS, Toolbox, error_message

log = logging.getLogger("liandan.agents")

MODES = ["text/plain", "application/json"]
DESCRIPTION = ("liandan trains, evaluates, diagnoses and inspects PyTorch models, and remembers what it learned. "
               'Send a data part {"skill": NAME, "arguments": {...}} (or that JSON as text); the result comes back '
               "as an artifact with one data part. Paths must lie inside the server's allowed directories.")

# Tags and example calls per skill (A2A AgentSkill.tags / .examples); a tool missing here still
# becomes a skill, tagged by what it does, with an example without arguments.
SKILL_TAGS: dict[str, list[str]] = {
    "list_presets": ["recipes"], "list_models": ["models", "zoo"], "list_runs": ["runs"],
    "train": ["training"], "evaluate": ["evaluation", "metrics"], "ood": ["evaluation", "ood"],
    "summary": ["models", "params", "flops"], "diagnose": ["doctor", "diagnosis"], "explain": ["doctor", "docs"],
    "predict": ["inference"], "generate": ["inference", "llm"],
    "remember": ["memory"], "recall": ["memory", "search"], "forget": ["memory"],
}
SKILL_EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "list_models": [{"tag": "image"}],
    "train": [{"recipe": "digits-lenet", "epochs": 2}],
    "evaluate": [{"run_dir": "digits-lenet-20260101-120000", "split": "test"}],
    "ood": [{"run_dir": "digits-lenet-20260101-120000", "ood": "noise", "method": "msp,energy"}],
    "summary": [{"model": "lenet5"}, {"model": "resnet18", "input_shape": [1, 3, 224, 224]}],
    "diagnose": [{"run_dir": "digits-lenet-20260101-120000"}],
    "explain": [{"topic": "overfitting"}],
    "predict": [{"run_dir": "wine-mlp-20260101-120000", "features": [13.2, 1.8, 2.4, 17.0, 100.0, 2.6, 2.7, 0.3,
                                                                     1.7, 5.0, 1.0, 3.0, 1000.0]}],
    "generate": [{"run_dir": "arith-gpt-20260101-120000", "prompt": "12+34=", "temperature": 0}],
    "remember": [{"text": "digits-lenet: lr 3e-3 diverged, 1e-3 reached 0.98", "tags": ["digits", "lr"]}],
    "recall": [{"query": "digits accuracy"}],
    "forget": [{"id": "3f2a9c1b7d4e"}],
}


def _skills() -> list[Any]:
    from a2a.types import AgentSkill

    from liandan.agents.function_calling import _description

    skills = []
    for info in TOOLS:
        kind = "read-only" if info.read_only else "writes"
        examples = [json.dumps({"skill": info.name, "arguments": a}) for a in SKILL_EXAMPLES.get(info.name, [{}])]
        skills.append(AgentSkill(id=info.name, name=info.title, description=_description(info.name),
                                 tags=["liandan", kind, *SKILL_TAGS.get(info.name, [])], examples=examples,
                                 input_modes=MODES, output_modes=["application/json"]))
    return skills


def agent_card(url: str = "http://127.0.0.1:9999/", *, bearer: bool = False) -> Any:
    """liandan's ``AgentCard`` (the SDK's protobuf type) with its JSON-RPC interface at ``url``;
    ``bearer``: the server takes a token, declared as the security scheme ``bearer`` (HTTP Bearer)."""
    from a2a.types import (
        AgentCapabilities,
        AgentCard,
        AgentInterface,
        HTTPAuthSecurityScheme,
        SecurityRequirement,
        SecurityScheme,
        StringList,
    )
    from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, TransportProtocol

    import liandan

    security: dict[str, Any] = {}
    if bearer:
        scheme = HTTPAuthSecurityScheme(scheme="Bearer", description="the server's token (--token / LIANDAN_TOKEN)")
        security = {"security_schemes": {"bearer": SecurityScheme(http_auth_security_scheme=scheme)},
                    "security_requirements": [SecurityRequirement(schemes={"bearer": StringList()})]}
    return AgentCard(
        name="liandan", description=DESCRIPTION, version=liandan.__version__,
        supported_interfaces=[AgentInterface(url=url, protocol_binding=TransportProtocol.JSONRPC.value,
                                             protocol_version=PROTOCOL_VERSION_CURRENT)],
        capabilities=AgentCapabilities(streaming=False, push_notifications=False),
        default_input_modes=MODES, default_output_modes=MODES, skills=_skills(), **security)


def card_dict(card: Any) -> dict[str, Any]:
    """The card as JSON data, as the well-known route serves it (camelCase, plus the SDK's 0.3 fields)."""
    from a2a.server.request_handlers.response_helpers import agent_card_to_dict

    return agent_card_to_dict(card)


def parse_request(message: Any) -> tuple[str, Any]:
    """``(skill, arguments)`` from an A2A user message: the first data part that is an object with
    ``skill``, else the message's text parsed as JSON. ``ValueError`` (one line) if neither."""
    from a2a.helpers import get_data_parts, get_message_text

    for data in get_data_parts(list(message.parts)) if message is not None else []:
        if isinstance(data, dict) and "skill" in data:
            return _split(data)
    text = get_message_text(message).strip() if message is not None else ""
    if text:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and "skill" in data:
            return _split(data)
    skills = ", ".join(t.name for t in TOOLS)
    raise ValueError('expected {"skill": NAME, "arguments": {...}} as a data part or as JSON text; '
                     f"skills: {skills}")


def _split(data: dict[str, Any]) -> tuple[str, Any]:
    skill = data.get("skill")
    if not isinstance(skill, str):
        raise ValueError("skill must be a string naming one of the agent card's skills")
    extra = set(data) - {"skill", "arguments"}
    if extra:
        raise ValueError(f"unexpected keys {sorted(extra)} beside skill and arguments")
    return skill, data.get("arguments")


def _executor_class() -> type:
    """The ``AgentExecutor`` subclass (built on first use: the SDK is imported lazily)."""
    import anyio
    from a2a.helpers import new_data_part, new_task, new_text_part
    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.tasks import TaskUpdater
    from a2a.types import TaskState

    from liandan.agents.function_calling import ArgumentError, validate_arguments

    class LiandanExecutor(AgentExecutor):
        """Runs one liandan tool per task (see the module docstring for the states)."""

        def __init__(self, toolbox: Toolbox, runner: ToolRunner | None = None) -> None:
            self.toolbox = toolbox
            self.runner = runner or ToolRunner()
            self._running: dict[str, tuple[threading.Event, asyncio.Event]] = {}  # task id -> (stop, stopped)
            self._canceled: set[str] = set()  # tasks whose tool cancel() stopped: it publishes their state

        async def execute(self, context: Any, event_queue: Any) -> None:
            task = context.current_task
            if task is None:  # the SDK wants the Task enqueued before any status update
                task = new_task(context.task_id, context.context_id, TaskState.TASK_STATE_SUBMITTED,
                                history=[context.message] if context.message else None)
                await event_queue.enqueue_event(task)
            updater = TaskUpdater(event_queue, task.id, task.context_id)

            def say(text: str) -> Any:
                return updater.new_agent_message([new_text_part(text)])

            try:
                skill, arguments = parse_request(context.message)
                if skill not in self.toolbox.functions():
                    raise ValueError(f"unknown skill {skill!r}; skills: {', '.join(t.name for t in TOOLS)}")
                kwargs = validate_arguments(skill, arguments)
            except (ValueError, ArgumentError) as e:
                await updater.reject(say(str(e)))
                return
            await updater.start_work(say(f"running {skill}"))
            stop, stopped = threading.Event(), asyncio.Event()
            self._running[task.id] = (stop, stopped)
            result, error = None, None
            try:
                result = await self.runner.run(skill, getattr(self.toolbox, skill), kwargs, cancel=stop)
            except Exception as e:
                error = e
            finally:
                stopped.set()
                self._running.pop(task.id, None)
            if task.id in self._canceled:
                self._canceled.discard(task.id)
                return
            if isinstance(error, ServerBusy):
                await updater.reject(say(str(error)))
                return
            if error is not None:
                msg = error_message(error)
                if msg is None:
                    log.error("skill %s raised an unexpected exception", skill, exc_info=error)
                    msg = f"internal error in skill {skill} (details in the server log)"
                await updater.failed(say(msg))
                return
            await updater.add_artifact([new_data_part(result, media_type="application/json")], name=skill)
            await updater.complete(say(f"{skill} done"))

        async def cancel(self, context: Any, event_queue: Any) -> None:
            # Stop the running tool (a training run at its next step) and wait for it, so that the
            # CancelTask reply comes once nothing runs; the SDK then cancels execute() (the runner would
            # stop the tool as well if this had not).
            if (entry := self._running.get(context.task_id)) is not None:
                stop, stopped = entry
                self._canceled.add(context.task_id)
                stop.set()
                with anyio.move_on_after(STOP_GRACE_S):
                    await stopped.wait()
            updater = TaskUpdater(event_queue, context.task_id, context.context_id)
            note = "canceled (a running training was stopped at its next step)"
            await updater.cancel(updater.new_agent_message([new_text_part(note)]))

    return LiandanExecutor


def make_executor(toolbox: Toolbox, runner: ToolRunner | None = None) -> Any:
    """A new ``LiandanExecutor`` (an ``a2a`` ``AgentExecutor``) running ``toolbox``'s tools with ``runner``."""
    return _executor_class()(toolbox, runner)


def build_app(roots: Iterable[str | os.PathLike[str]] | Sandbox | None = None, *, url: str | None = None,
              host: str = "127.0.0.1", port: int = 9999, token: str | None = None,
              max_body: int = DEFAULT_MAX_BODY, tool_timeout: float | None = None,
              max_concurrent: int = DEFAULT_MAX_CONCURRENT, max_waiting: int = DEFAULT_MAX_WAITING) -> HTTPGuard:
    """An ASGI app serving liandan over A2A (card + JSON-RPC), sandboxed to ``roots``, behind the
    :class:`HTTPGuard` for a server bound to ``host`` (``token``: bearer token, None for none).

    ``url`` is what the card advertises (default ``http://HOST:PORT/``). ``app.state.toolbox``,
    ``app.state.runner`` and ``app.state.card`` are there for embedders and tests."""
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore
    from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
    from starlette.applications import Starlette

    sandbox = roots if isinstance(roots, Sandbox) else Sandbox(roots)
    box = Toolbox(sandbox)
    runner = ToolRunner(max_concurrent=max_concurrent, max_waiting=max_waiting, timeout=tool_timeout)
    card = agent_card(url or base_url(host, port), bearer=bool(token))
    handler = DefaultRequestHandler(agent_executor=make_executor(box, runner), task_store=InMemoryTaskStore(),
                                    agent_card=card)
    routes = [*create_agent_card_routes(card), *create_jsonrpc_routes(handler, rpc_url="/", enable_v0_3_compat=True)]
    app = Starlette(routes=routes)
    app.state.toolbox, app.state.runner, app.state.card = box, runner, card
    return HTTPGuard(app, host=host, token=token, max_body=max_body, public_paths=[AGENT_CARD_WELL_KNOWN_PATH])


def base_url(host: str, port: int) -> str:
    """``http://HOST:PORT/`` (an IPv6 host in brackets, RFC 3986 §3.2.2)."""
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(roots: Iterable[str] | None = None, *, host: str = "127.0.0.1", port: int = 9999,
          log_level: str = "WARNING", token: str | None = None, tool_timeout: float | None = None,
          max_concurrent: int = DEFAULT_MAX_CONCURRENT, max_body: int = DEFAULT_MAX_BODY) -> None:
    """Run the A2A server on ``host:port`` (logs on stderr, nothing on stdout); ``token`` defaults to
    ``$LIANDAN_TOKEN``."""
    import uvicorn

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.WARNING), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    token = resolve_token(token)
    if (warning := check_bind(host, token)) is not None:  # no token off loopback: refused
        log.warning("%s", warning)
    app = build_app(roots, host=host, port=port, token=token, max_body=max_body, tool_timeout=tool_timeout,
                    max_concurrent=max_concurrent)
    roots_text = ", ".join(app.state.toolbox.sandbox.roots)
    auth = "bearer token required" if token else "no token"
    print(f"liandan A2A agent on {base_url(host, port)} ({auth}; card: /.well-known/agent-card.json; "
          f"roots: {roots_text})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_config=None, log_level=log_level.lower())
