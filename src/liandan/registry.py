"""The one Registry class every extension point uses (models, data, losses, optimizers, ...).

As in timm, a decorator registers a builder under a name::

    @register_model("lenet5")
    def lenet5(num_classes: int = 10, in_channels: int = 1) -> nn.Module: ...

A builder's keyword parameters *are* its options: a recipe section ``{name: lenet5, ...}`` is
validated against the signature (unknown keys and wrong types are errors naming the key), and
the one-line description is the first line of the docstring. Tests iterate over the registries,
so every new entry is tested without being named in a test file.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from liandan.errors import LiandanError, did_you_mean


@dataclass
class Entry:
    name: str
    fn: Callable[..., Any]
    description: str
    tags: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def options(self) -> dict[str, inspect.Parameter]:
        """The builder's keyword options (name -> Parameter), excluding *args/**kwargs."""
        sig = inspect.signature(self.fn)
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return {n: p for n, p in sig.parameters.items() if p.kind in kinds}

    def validate(self, options: dict[str, Any], *, where: str, inferred: tuple[str, ...] = ()) -> dict:
        """Check ``options`` against the signature and coerce their types with pydantic.

        ``inferred`` names options the caller fills in itself (e.g. num_classes from the data);
        they are allowed but not required.
        """
        import pydantic

        params = self.options()
        unknown = sorted(set(options) - set(params))
        if unknown:
            allowed = ", ".join(sorted(params)) or "(none)"
            raise LiandanError(
                f"{where}: unknown option {unknown[0]!r} for {self.name!r}"
                f"{did_you_mean(unknown[0], list(params))}; allowed: {allowed}"
            )
        fields: dict[str, Any] = {}
        for n in options:
            p = params[n]
            ann = p.annotation if p.annotation is not inspect.Parameter.empty else Any
            if isinstance(ann, str):  # postponed annotations: resolve in the builder's module
                ann = eval(ann, self.fn.__globals__)  # noqa: S307 (our own source)
            fields[n] = (ann, ...)
        model = pydantic.create_model(f"{self.name}_options", __config__=pydantic.ConfigDict(
            arbitrary_types_allowed=True, extra="forbid"), **fields)
        try:
            checked = model(**options)
        except pydantic.ValidationError as e:
            err = e.errors()[0]
            key = ".".join(str(x) for x in err["loc"])
            raise LiandanError(f"{where}.{key}: {err['msg']} (got {err.get('input')!r})") from None
        return {n: getattr(checked, n) for n in options}


class Registry:
    """A named collection of builders of one kind, filled by a decorator.

    ``modules`` are imported on first lookup so registering stays a side effect of importing
    the module that defines the entry, and ``liandan --help`` imports none of them.
    """

    def __init__(self, kind: str, modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._modules = list(modules)
        self._entries: dict[str, Entry] = {}
        self._loaded = False

    def add_module(self, module: str) -> None:
        """Declare another module whose import registers entries (later pillars, plugins)."""
        self._modules.append(module)
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for m in self._modules:
            importlib.import_module(m)

    def register(self, name: str, *, tags: tuple[str, ...] = (), **extra: Any) -> Callable:
        def deco(fn: Callable) -> Callable:
            if name in self._entries and self._entries[name].fn is not fn:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            doc = inspect.getdoc(fn) or ""
            self._entries[name] = Entry(name, fn, doc.splitlines()[0] if doc else "", tags, extra)
            return fn

        return deco

    def get(self, name: str) -> Entry:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            names = self.names()
            raise LiandanError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, names)}; available: {', '.join(names)}"
            ) from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry]:
        self._load()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def __len__(self) -> int:
        self._load()
        return len(self._entries)


MODELS = Registry("model", ("liandan.models",))
DATA = Registry("data source", ("liandan.data.sources",))
LOSSES = Registry("loss", ("liandan.losses", "liandan.compress.distill"))
OPTIMIZERS = Registry("optimizer", ("liandan.optim.optimizers",))
SCHEDULES = Registry("schedule", ("liandan.optim.schedules",))
RULES = Registry("rule", ("liandan.doctor.rules",))
TASKS = Registry("task", ("liandan.train.tasks",))
ADAPTERS = Registry("adapter", ("liandan.llm.peft",))

register_model = MODELS.register
register_data = DATA.register
register_loss = LOSSES.register
register_optimizer = OPTIMIZERS.register
register_schedule = SCHEDULES.register
register_rule = RULES.register
register_task = TASKS.register
register_adapter = ADAPTERS.register

REGISTRIES: dict[str, Registry] = {
    "models": MODELS,
    "data": DATA,
    "losses": LOSSES,
    "optimizers": OPTIMIZERS,
    "schedules": SCHEDULES,
    "rules": RULES,
    "tasks": TASKS,
    "adapters": ADAPTERS,
}
