"""Running one tool call for an async server: a worker thread, bounded concurrency, a timeout and
cooperative cancellation.

Cancellation. The worker thread runs in a copy of the caller's context holding a fresh cancel event
(:data:`liandan.agents.cancel.CANCEL`). When the server cancels the call (MCP
``notifications/cancelled``, an A2A ``CancelTask``, server shutdown) or its timeout passes,
:class:`ToolRunner` sets the event and then waits, shielded from further cancellation, for the thread
to wind down (a training call stops at its next step, see :mod:`liandan.agents.cancel`), so no tool
keeps running behind a call that is over.

Concurrency. At most ``max_concurrent`` calls run at once (torch work is serialised further by the
toolbox's lock); up to ``max_waiting`` more wait in line. A call beyond that is refused at once with
:class:`ServerBusy` (a tool error the client can read, "retry later"), not queued without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

import anyio

from liandan.agents.cancel import CANCEL
from liandan.errors import LiandanError

log = logging.getLogger("liandan.agents")

DEFAULT_MAX_CONCURRENT = 4
DEFAULT_MAX_WAITING = 16
STOP_GRACE_S = 300.0  # how long a cancelled call waits for its thread (one training step, a final save)


class ServerBusy(LiandanError):
    """Too many tool calls running and waiting: refused, nothing ran."""


class ToolTimeout(LiandanError):
    """The call ran past the server's tool timeout and was stopped."""


class ToolRunner:
    """Runs tool functions for an async server (see the module docstring). One per server."""

    def __init__(self, *, max_concurrent: int = DEFAULT_MAX_CONCURRENT, max_waiting: int = DEFAULT_MAX_WAITING,
                 timeout: float | None = None) -> None:
        if max_concurrent < 1 or max_waiting < 0:
            raise ValueError("max_concurrent must be ≥ 1 and max_waiting ≥ 0")
        self.max_concurrent, self.max_waiting = int(max_concurrent), int(max_waiting)
        self.timeout = timeout if timeout and timeout > 0 else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: anyio.Semaphore | None = None
        self._waiting = 0

    def _gate(self) -> anyio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:  # a semaphore belongs to one event loop
            self._loop, self._slots, self._waiting = loop, anyio.Semaphore(self.max_concurrent), 0
        return self._slots

    async def run(self, name: str, fn: Callable[..., Any], kwargs: dict[str, Any] | None = None, *,
                  cancel: threading.Event | None = None) -> Any:
        """``fn(**kwargs)`` in a worker thread, once a slot is free; :class:`ServerBusy` if the line is
        full, :class:`ToolTimeout` past the timeout; cancelling the awaiting task stops the tool.

        ``cancel``: the call's cancel event (default a new one), for a caller that stops the tool
        itself by setting it (the call then returns what the stopped tool returns)."""
        slots = self._gate()
        if slots.value == 0 and self._waiting >= self.max_waiting:
            raise ServerBusy(f"server busy: {self.max_concurrent} tool calls running and {self._waiting} waiting; "
                             "retry later")
        self._waiting += 1
        try:
            await slots.acquire()
        finally:
            self._waiting -= 1
        try:
            return await self._run_thread(name, fn, kwargs or {}, cancel or threading.Event())
        finally:
            slots.release()

    async def _run_thread(self, name: str, fn: Callable[..., Any], kwargs: dict[str, Any],
                          event: threading.Event) -> Any:
        ctx = contextvars.copy_context()
        ctx.run(CANCEL.set, event)
        future = asyncio.get_running_loop().run_in_executor(None, functools.partial(ctx.run, fn, **kwargs))
        try:
            with anyio.fail_after(self.timeout) if self.timeout else contextlib.nullcontext():
                return await asyncio.shield(future)  # a cancel reaches us, not the thread's future
        except TimeoutError:
            if future.done():  # the tool itself raised TimeoutError
                raise
            event.set()
            result = await self._wind_down(name, future)
            raise ToolTimeout(f"{name} timed out after {self.timeout:g} s and was stopped{_outcome(result)}") from None
        except Exception:  # the tool's own error
            raise
        except BaseException:  # cancelled: the client gave up, the task was cancelled, the server shuts down
            event.set()
            log.info("tool call %s cancelled; stopping it", name)
            with anyio.CancelScope(shield=True):
                await self._wind_down(name, future)
            raise

    @staticmethod
    async def _wind_down(name: str, future: asyncio.Future[Any]) -> Any:
        """The stopped tool's result (None if it raised or outlived the grace period)."""
        with anyio.move_on_after(STOP_GRACE_S):
            try:
                return await asyncio.shield(future)
            except Exception:  # noqa: BLE001 (the call is over; its error is only logged)
                log.info("tool %s ended with an error after it was stopped", name, exc_info=True)
                return None
        log.warning("tool %s still running %g s after it was stopped", name, STOP_GRACE_S)
        return None


def _outcome(result: Any) -> str:
    """``" (run DIR, status S, N steps)"`` for a stopped training call's result, else ``""``."""
    if isinstance(result, dict) and result.get("run_dir"):
        return f" (run {result['run_dir']}, status {result.get('status')}, {result.get('steps')} steps)"
    return ""
