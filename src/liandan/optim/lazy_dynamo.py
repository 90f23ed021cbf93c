"""Keep ``torch.optim`` from importing ``torch._dynamo`` (about a second) when nothing compiles.

PyTorch marks some ``Optimizer`` methods as never traced by the compiler: ``add_param_group``
(called by every ``Optimizer.__init__``), ``zero_grad``, ``state_dict`` and ``load_state_dict``
are wrapped in ``torch._disable_dynamo`` (``torch/_compile.py``), and the built-in optimizers'
``step`` in ``_use_grad_for_differentiable`` (``torch/optim/optimizer.py``). Both wrappers
``import torch._dynamo`` on their first call, to build ``torch._dynamo.disable(fn)`` or to call
``torch._dynamo.graph_break()``: on the 2-core sandbox that import is 0.9 s of the 3.5 s from
``liandan train digits-mlp`` to its first step, paid by every run, compiled or not. Dispatch
modes are wrapped the same way (``TorchDispatchMode.__init_subclass__`` wraps each
``__torch_dispatch__``), so the FLOP count at the start of every run imported it too.

Why skipping it is exact: ``torch._dynamo`` is imported by everything that can put a frame under
dynamo (``torch.compile``, ``torch.export``, ``torch._dynamo.optimize``), so while it is absent
from ``sys.modules`` no caller can be in a compiled frame, ``disable(fn)`` would only run
``fn`` with dynamo's frame callback unset (it is unset already), and ``graph_break()`` is an
empty function outside tracing. So, while ``torch._dynamo`` is not imported:

* ``_disable_dynamo``'s wrapper looks for a cached ``fn.__dynamo_disable`` before importing; we
  put there a function that calls ``fn`` directly and, once ``torch._dynamo`` is imported,
  builds the real ``torch._dynamo.disable(fn, recursive, wrapping=False)`` (what the wrapper
  would have built), caches it in its place and calls it: from then on torch's own path runs.
  This is done for the wrappers made so far (``Optimizer``'s, the dispatch modes defined), and
  for those made later: ``torch._disable_dynamo`` is replaced by a function that returns torch's
  own wrapper with the cache filled.
* each built-in optimizer's ``step`` becomes the same grad-mode switch as ``_use_grad`` minus
  the two graph breaks, and calls torch's ``_use_grad`` itself once ``torch._dynamo`` is imported.

``tests/optim/test_lazy_dynamo.py`` checks, in fresh processes, that building, stepping and
checkpointing optimizers and counting FLOPs imports no ``torch._dynamo``, with results equal bit
for bit to torch's own path, and that ``torch.compile`` afterwards traces the same graphs, broken
at the same disabled methods. If torch's wrappers are not shaped as expected (another version),
``install`` changes nothing: the cost comes back, never a wrong result; ``LIANDAN_LAZY_DYNAMO=0``
leaves torch untouched too.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import optimizer as _torch_optimizer
from torch.utils._python_dispatch import TorchDispatchMode

_DYNAMO = "torch._dynamo"
_CACHE = "__dynamo_disable"  # the attribute torch._compile._disable_dynamo's wrapper reads first
_DISABLED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")
_installed = False


def _code_of(make: Callable[..., Any]) -> Any:
    """The code object of the closures that the wrapper factory ``make`` returns."""
    return getattr(make(lambda: None), "__code__", None)


def _cells(fn: Any, code: Any) -> dict[str, Any] | None:
    """The closure of ``fn`` by variable name if ``fn`` is a closure of ``code``, else None."""
    if code is None or getattr(fn, "__code__", None) is not code or fn.__closure__ is None:
        return None
    return {name: cell.cell_contents for name, cell in zip(code.co_freevars, fn.__closure__, strict=True)}


def _lazy_disable(fn: Callable[..., Any], recursive: bool) -> Callable[..., Any]:
    """What ``fn.__dynamo_disable`` holds until ``torch._dynamo`` is imported (module docstring)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        if _DYNAMO not in sys.modules:
            return fn(*args, **kwargs)  # no frame can be under dynamo: disable(fn) would be fn
        import torch._dynamo

        real = torch._dynamo.disable(fn, recursive, wrapping=False)
        setattr(fn, _CACHE, real)  # torch's wrapper calls this one directly from now on
        return real(*args, **kwargs)

    return call


def _lazy_use_grad(use_grad: Callable[..., Any], func: Callable[..., Any]) -> Callable[..., Any]:
    """``_use_grad_for_differentiable(func)`` without its graph breaks while dynamo is absent."""

    @functools.wraps(func)
    def step(*args: Any, **kwargs: Any) -> Any:
        if _DYNAMO in sys.modules:
            return use_grad(*args, **kwargs)  # torch's own wrapper, graph breaks included
        prev = torch.is_grad_enabled()
        try:  # as _use_grad: differentiable optimizers keep autograd on during the update
            torch.set_grad_enabled(args[0].defaults["differentiable"])
            ret = func(*args, **kwargs)
        finally:
            torch.set_grad_enabled(prev)
        return ret

    return step


def _prefill(fn: Any, recursive: bool) -> None:
    """Put the lazy ``disable`` where torch's ``_disable_dynamo`` wrapper of ``fn`` looks first."""
    if getattr(fn, _CACHE, None) is None:  # not built yet (else ours, or torch's real one)
        try:
            setattr(fn, _CACHE, _lazy_disable(fn, recursive))
        except (AttributeError, TypeError):  # an object without a __dict__: torch's own path
            pass


def _prefill_wrapper(inner: Any, code: Any) -> None:
    """``inner``: a ``_disable_dynamo`` wrapper (``code``) made before ``install``, or anything else."""
    cells = _cells(inner, code)
    if cells is None or set(cells) != {"fn", "recursive"} or getattr(inner, "__wrapped__", None) is not cells["fn"]:
        return  # not torch's wrapper as we know it: leave it alone
    _prefill(cells["fn"], cells["recursive"])


def _patch_wrapped() -> None:
    """Wrappers made before us: ``Optimizer``'s methods (wrapped when torch.optim was imported)
    and the ``__torch_dispatch__`` of every dispatch mode defined so far."""
    code = _code_of(torch._disable_dynamo)
    for name in _DISABLED:
        _prefill_wrapper(_torch_optimizer.Optimizer.__dict__.get(name), code)
    modes: list[type] = [TorchDispatchMode]
    while modes:
        cls = modes.pop()
        modes.extend(cls.__subclasses__())
        _prefill_wrapper(cls.__dict__.get("__torch_dispatch__"), code)


def _patch_decorator() -> None:
    """Functions wrapped from now on get the lazy cache too: ``TorchDispatchMode.__init_subclass__``
    wraps each mode's ``__torch_dispatch__`` (``FlopCounterMode``'s when ``torch.utils.flop_counter``
    is imported), and ``torch.nn.parallel`` / ``torch.utils.checkpoint`` call it at import."""
    original = torch._disable_dynamo
    if getattr(original, "_liandan_lazy", False):
        return

    @functools.wraps(original)
    def _disable_dynamo(fn: Any = None, recursive: bool = True) -> Any:
        if fn is None:  # decorator with arguments: @torch._disable_dynamo(recursive=False)
            return functools.partial(_disable_dynamo, recursive=recursive)
        wrapped = original(fn, recursive)
        _prefill(fn, recursive)
        return wrapped

    _disable_dynamo._liandan_lazy = True  # type: ignore[attr-defined]
    torch._disable_dynamo = _disable_dynamo  # type: ignore[assignment]


def _patch_steps() -> None:
    """Each built-in optimizer's ``step`` (``_use_grad``): before any instance exists, since the
    first ``Optimizer.__init__`` wraps its class's ``step`` in the profiling hook (``hooked``),
    which then wraps ours. (An instance built earlier has imported ``torch._dynamo`` already.)"""
    code = _code_of(_torch_optimizer._use_grad_for_differentiable)
    for cls in vars(torch.optim).values():
        if not (isinstance(cls, type) and issubclass(cls, _torch_optimizer.Optimizer)):
            continue
        use_grad = cls.__dict__.get("step")
        cells = _cells(use_grad, code)
        if cells is None or set(cells) != {"func"} or getattr(use_grad, "hooked", False):
            continue
        cls.step = _lazy_use_grad(use_grad, cells["func"])  # type: ignore[method-assign]


def install() -> None:
    """Make ``torch.optim`` import ``torch._dynamo`` only when something compiles (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    if _DYNAMO in sys.modules or os.environ.get("LIANDAN_LAZY_DYNAMO", "1") == "0":  # opt-out: torch untouched
        return  # already paid for: nothing to save
    try:
        _patch_wrapped()
        _patch_decorator()
        _patch_steps()
    except (AttributeError, TypeError, ValueError):  # torch reshaped: keep its own behaviour
        pass
