"""The one Registry class every extension point uses (models, data, losses, optimizers, ...).

As in timm, a decorator registers a builder under a name::

    @register_model("lenet5")
    def lenet5(num_classes: int = 10, in_channels: int = 1) -> nn.Module: ...

A builder's keyword parameters *are* its options: a recipe section ``{name: lenet5, ...}`` is
validated against the signature (unknown keys and wrong types are errors naming the key), and
the one-line description is the first line of the docstring. Each option's help text comes from
the docstring's Google-style ``Args:`` section (peft's ``metadata={"help": ...}``, read from the
source)::

    Args:
        small_input: swap the ImageNet stem for a 3×3 stride-1 conv; None: when H or W < 64.
        width: channels of the first stage (64 in the paper); later stages double it.

one ``name: text`` line per option, longer texts continued on deeper-indented lines. Tests
iterate over the registries, so every new entry is tested (and its help checked) without being
named in a test file.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from liandan.errors import LiandanError, did_you_mean

_ARG = re.compile(r"(?P<names>[A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*(?:\([^)]*\))?\s*:(?:\s+(?P<text>.*))?$")


def parse_args_section(doc: str) -> dict[str, str]:
    """The ``Args:`` section of a (dedented) Google-style docstring: option name -> help text.

    An item is ``name: text`` or ``name (type): text``; ``a, b: text`` documents several options
    at once. Lines indented deeper than the item continue its text (joined with single spaces);
    the section ends at the next line indented no deeper than ``Args:`` (e.g. ``Returns:``).
    """
    items: list[tuple[list[str], list[str]]] = []  # (names, lines of text)
    lines = doc.expandtabs().splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == "Args:"), None)
    if start is None:
        return {}
    base = len(lines[start]) - len(lines[start].lstrip())
    item_indent: int | None = None
    for ln in lines[start + 1:]:
        if not ln.strip():
            continue
        indent = len(ln) - len(ln.lstrip())
        if indent <= base:
            break
        m = _ARG.match(ln.strip())
        if m and (item_indent is None or indent <= item_indent):
            item_indent = indent
            items.append((re.split(r"\s*,\s*", m["names"]), [m["text"] or ""]))
        elif items:
            items[-1][1].append(ln.strip())
    return {n: " ".join(t for t in text if t) for names, text in items for n in names}


# Help for the options the data fills in (``INFERRED``), unless the builder's docstring says more.
INFERRED_HELP = {
    "num_classes": "outputs of the head: the classes, or the targets of a regression",
    "in_channels": "channels of the input images",
    "input_shape": "shape of one sample: (C, H, W) images, (T, F) sequences, (F,) features",
    "vocab_size": "token vocabulary size (rows of the embedding)",
    "max_len": "longest token sequence (size of the position table)",
    "task": "what the model is trained for (classify, regress, lm, mlm, ...)",
}


@dataclass
class Entry:
    name: str
    fn: Callable[..., Any]
    description: str
    tags: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    # Parameters the framework passes to a builder itself (an optimizer's parameter groups, a
    # schedule's step count): not options of a recipe section, so neither listed nor documented.
    # A callback's ``recipe``: the run's recipe (the doctor reads its ``doctor`` section).
    SUPPLIED: ClassVar[tuple[str, ...]] = ("params", "optimizer", "total_steps", "recipe")

    def options(self) -> dict[str, inspect.Parameter]:
        """The builder's keyword options (name -> Parameter), excluding *args/**kwargs."""
        sig = inspect.signature(self.fn)
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return {n: p for n, p in sig.parameters.items() if p.kind in kinds}

    def option_help(self, inferred: tuple[str, ...] = ()) -> dict[str, str]:
        """Each option's help text (name -> text, "" when undocumented), in signature order.

        Read from the ``Args:`` section of the builder's docstring (a class's, then its
        ``__init__``'s). ``inferred`` names options the data fills in (``INFERRED`` for models):
        undocumented, they get :data:`INFERRED_HELP`. :attr:`SUPPLIED` parameters are left out.
        """
        docs = parse_args_section(inspect.getdoc(self.fn) or "")
        if inspect.isclass(self.fn):
            docs = {**parse_args_section(inspect.getdoc(self.fn.__init__) or ""), **docs}
        return {n: docs.get(n) or (f"{INFERRED_HELP.get(n, n)}; inferred from the data" if n in inferred else "")
                for n in self.options() if n not in self.SUPPLIED}

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
                # a function's globals; a class (a callback) has none: its module's
                scope = getattr(self.fn, "__globals__", None) or vars(sys.modules[self.fn.__module__])
                ann = eval(ann, scope)  # noqa: S307 (our own source)
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

    The modules that register entries are found through the entry-point group
    ``liandan.<group>`` (liandan's own in its pyproject.toml, a plugin's in its own) and the
    group ``liandan.plugins`` (one group a plugin can name for every kind), and imported on first
    lookup: registering stays a side effect of importing the module that defines the entry,
    ``liandan --help`` imports none of them, and this base layer names no module above it.

    A name ``package.module:ClassName`` is user code: :meth:`get` imports it only once
    :meth:`allow` trusted it (a recipe's ``model.trust: true`` or ``--trust``); such entries are
    not listed by :meth:`entries`.
    """

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = f"liandan.{group}"
        self._modules: list[str] = []
        self._entries: dict[str, Entry] = {}
        self._imported: dict[str, Entry] = {}  # "pkg.mod:Class" entries: user code, never listed
        self._trusted: set[str] = set()
        self._loaded = False

    def add_module(self, module: str) -> None:
        """Declare another module whose import registers entries (later pillars, plugins)."""
        self._modules.append(module)
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for m in [*entry_point_modules(self.group), *entry_point_modules(PLUGINS), *self._modules]:
            importlib.import_module(m)

    def allow(self, path: str) -> None:
        """Trust the user code ``package.module:ClassName``: :meth:`get` may import it."""
        self._trusted.add(path)

    def add_class(self, path: str, cls: Callable) -> Entry:
        """The entry of a class already in hand under its path (a user's module passed to ``train``)."""
        doc = inspect.getdoc(cls) or ""
        entry = Entry(path, cls, doc.splitlines()[0] if doc else "", extra={"user_code": True})
        self._imported[path] = entry
        self._trusted.add(path)
        return entry

    def _import(self, path: str) -> Entry:
        if path in self._imported:
            return self._imported[path]
        if path not in self._trusted:
            raise LiandanError(f"{self.kind} {path!r} is user code and importing it runs that code: set trust: true "
                               f"in the section (or pass --trust) only for code you trust")
        module, _, qual = path.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in qual.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as e:
            raise LiandanError(f"cannot import {self.kind} {path!r}: {e} (put its package on sys.path; a run "
                               f"trained on a module instance loads with load_run(dir, model=...))") from None
        if not callable(obj):
            raise LiandanError(f"{self.kind} {path!r} is a {type(obj).__name__}, not a class or function")
        return self.add_class(path, obj)

    def register(self, name: str, *, tags: tuple[str, ...] = (), **extra: Any) -> Callable:
        def deco(fn: Callable) -> Callable:
            if name in self._entries and self._entries[name].fn is not fn:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            doc = inspect.getdoc(fn) or ""
            self._entries[name] = Entry(name, fn, doc.splitlines()[0] if doc else "", tags, extra)
            return fn

        return deco

    def get(self, name: str) -> Entry:
        if ":" in name:
            return self._import(name)
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


def entry_point_modules(group: str) -> list[str]:
    """Modules named in ``group`` by every installed distribution (liandan first, then plugins)."""
    eps = _all_entry_points().select(group=group)
    return [ep.value for ep in sorted(eps, key=lambda ep: (ep.dist is None or ep.dist.name != "liandan", ep.name))]


@functools.cache
def _all_entry_points() -> importlib.metadata.EntryPoints:
    eps = importlib.metadata.entry_points()  # one scan of the installed distributions per process
    if not eps.select(group=MODELS.group):
        raise LiandanError("liandan's entry points are missing: install it (pip install -e .) rather than "
                           "putting src/ on PYTHONPATH")
    return eps


# The entry-point group whose modules every registry imports (a plugin registering several kinds).
PLUGINS = "liandan.plugins"

# Options a model builder gets from the data when the recipe does not set them (liandan.models).
INFERRED = ("num_classes", "in_channels", "input_shape", "vocab_size", "max_len", "task")

MODELS = Registry("model", "models")
DATA = Registry("data source", "data")
LOSSES = Registry("loss", "losses")
OPTIMIZERS = Registry("optimizer", "optimizers")
SCHEDULES = Registry("schedule", "schedules")
RULES = Registry("rule", "rules")
TASKS = Registry("task", "tasks")
ADAPTERS = Registry("adapter", "adapters")
# Run directories of another kind (a compressed run): entries take the directory and return a Run.
RUN_FORMATS = Registry("run format", "run_formats")
CALLBACKS = Registry("callback", "callbacks")
# Post-run work of the pillars (the report): entries take (run_dir, recipe, summary, echo) and run
# after summary.json is written; the trainer calls them without naming them.
RUN_HOOKS = Registry("run hook", "run_hooks")

register_model = MODELS.register
register_data = DATA.register
register_loss = LOSSES.register
register_optimizer = OPTIMIZERS.register
register_schedule = SCHEDULES.register
register_rule = RULES.register
register_task = TASKS.register
register_adapter = ADAPTERS.register
register_run_format = RUN_FORMATS.register
register_callback = CALLBACKS.register
register_run_hook = RUN_HOOKS.register

REGISTRIES: dict[str, Registry] = {
    "models": MODELS,
    "data": DATA,
    "losses": LOSSES,
    "optimizers": OPTIMIZERS,
    "schedules": SCHEDULES,
    "rules": RULES,
    "tasks": TASKS,
    "adapters": ADAPTERS,
    "callbacks": CALLBACKS,
}
