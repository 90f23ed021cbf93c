"""Every recipe key with its type, default and description, read from the pydantic schema.

:func:`recipe_keys` walks :class:`liandan.recipe.Recipe` (sections, optional sections, lists of
sections) into dotted keys; :func:`markdown` renders them as ``docs/recipe.md`` and
:func:`text_table` for ``liandan recipe``. Regenerate the page after changing the schema::

    python -m liandan.recipe_doc > docs/recipe.md

(``tests/core/test_recipe_doc.py`` fails while the page is out of date). The JSON schema itself is
``Recipe.model_json_schema()`` (``liandan recipe --schema``).
"""

from __future__ import annotations

import json
import shutil
import textwrap
import types
import typing
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from liandan.recipe import Recipe

# Sections without a description in the schema (the required ones are declared bare).
SECTIONS = {
    "data": "where the samples come from, how they are split, normalised and batched",
    "model": "the network: a registered model and its weight initialisation",
    "loss": "the training loss and weight penalties",
    "optim": "the optimizer and its learning rate",
    "schedule": "the learning-rate schedule, after an optional linear warmup",
    "train": "the training loop: length, devices, precision, clipping, checkpoints",
    "doctor": "the doctor that watches the run and may repair it",
}

# Sections whose extra keys are the options of a registry entry: (key naming it, what it names, `list` kind).
REGISTRY_SECTIONS = {
    "data": ("source", "data source", "data"), "model": ("name", "model", "models"),
    "adapter": ("name", "adapter", "adapters"), "loss": ("name", "loss", "losses"),
    "optim": ("name", "optimizer", "optimizers"), "schedule": ("name", "schedule", "schedules"),
    "train.callbacks[]": ("name", "callback", "callbacks"),
}

HEADER = """\
# Recipe keys

<!-- Generated from the pydantic schema (src/liandan/recipe.py) by
     `python -m liandan.recipe_doc > docs/recipe.md`; do not edit by hand.
     tests/core/test_recipe_doc.py fails while this page is out of date. -->

A recipe is one YAML file (or a preset name, or a dict in Python). Only `data` and `model` are
required; every other key has the default below. Override any key from the command line with
`--set dotted.key=value` (values are read as YAML: `3e-4`, `[64, 32]`, `null`). Unknown keys
and wrong types are errors naming the key.

Sections that name a registry entry (`data.source`, `model.name`, `loss.name`, `optim.name`,
`schedule.name`, `adapter.name`, `train.callbacks[].name`) also take that entry's options beside
the name, e.g. `model: {name: resnet18, small_input: true}`; `liandan list models --verbose`
lists each entry's options with their defaults and help. The machine-readable schema:
`liandan recipe --schema`.
"""


@dataclass(frozen=True)
class Key:
    key: str
    type: str
    default: str
    description: str


def recipe_keys(model: type[BaseModel] = Recipe, prefix: str = "") -> list[Key]:
    """Every key of ``model`` as a dotted path (``train.early_stopping.patience``), depth first.

    A section (a nested model, optional or not) is a row of its own followed by its keys; a list of
    sections is written ``key[]``; a section of registry options ends with a ``key.<option>`` row.
    """
    rows: list[Key] = []
    for name, f in model.model_fields.items():
        path = prefix + (f.alias or name)  # as recipes write it (adapter.from)
        sub, many = _section(f.annotation)
        desc = " ".join((f.description or SECTIONS.get(path, "")).split())
        rows.append(Key(path, _type(f.annotation, sub, many) + _bounds(f), _default(f), desc))
        if sub is not None:
            inner = f"{path}[]" if many else path
            rows += recipe_keys(sub, inner + ".")
            if inner in REGISTRY_SECTIONS:
                named, what, kind = REGISTRY_SECTIONS[inner]
                rows.append(Key(f"{inner}.<option>", "any", "", f"options of the {what} named by {inner}.{named}, "
                                f"beside it (liandan list {kind} --verbose)"))
    return rows


def _section(ann: Any) -> tuple[type[BaseModel] | None, bool]:
    """The nested model inside ``X``, ``X | None`` or ``list[X]``, and whether it is a list."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann, False
    args = typing.get_args(ann)
    if typing.get_origin(ann) is list and args:
        sub, _ = _section(args[0])
        return sub, sub is not None
    for a in args:
        sub, many = _section(a)
        if sub is not None:
            return sub, many
    return None, False


def _type(ann: Any, sub: type[BaseModel] | None, many: bool) -> str:
    if sub is not None:
        optional = type(None) in typing.get_args(ann)
        return "list of sections" if many else "section | null" if optional else "section"
    return _name(ann)


def _name(ann: Any) -> str:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if ann is type(None):
        return "null"
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_name(a) for a in args)}]"
    return getattr(ann, "__name__", str(ann))


def _bounds(f: FieldInfo) -> str:
    marks = []
    for m in f.metadata:
        for attr, sign in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            if getattr(m, attr, None) is not None:
                marks.append(f"{sign} {getattr(m, attr)}")
    return f" ({', '.join(marks)})" if marks else ""


def _default(f: FieldInfo) -> str:
    if f.default_factory is not None:
        value = f.default_factory()  # type: ignore[call-arg]
    elif f.default is PydanticUndefined:
        return "required"
    else:
        value = f.default
    if isinstance(value, BaseModel):
        return "(section)"
    return value if isinstance(value, str) and value else json.dumps(value)


def markdown() -> str:
    """``docs/recipe.md``: one table per top-level section, the top-level keys first."""
    rows = recipe_keys()
    groups: dict[str, list[Key]] = {"top level": []}
    for r in rows:
        head = r.key.split(".")[0].removesuffix("[]")
        if "." not in r.key and not r.type.startswith(("section", "list of sections")):
            groups["top level"].append(r)
        else:
            groups.setdefault(head, []).append(r)
    out = [HEADER]
    for title, keys in groups.items():
        out += [f"## {title}\n", "| key | type | default | description |", "|---|---|---|---|"]
        out += [f"| `{r.key}` | {_md(r.type)} | {_md_default(r.default)} | {_md(r.description)} |" for r in keys]
        out.append("")
    return "\n".join(out)


def _md(text: str) -> str:
    """Table-cell text: pipes escaped, "<" as an entity (``<name>`` is no HTML tag)."""
    return text.replace("|", "\\|").replace("<", "&lt;")


def _md_default(default: str) -> str:
    if default in ("", "required", "(section)"):
        return f"*{default}*" if default else ""
    return f"`{default.replace('|', chr(92) + '|')}`"


def text_table(width: int | None = None) -> str:
    """The keys as an aligned text table (``liandan recipe``), descriptions wrapped to the terminal."""
    rows = recipe_keys()
    width = width or min(shutil.get_terminal_size((100, 24)).columns, 140)
    kw = max(len(r.key) for r in rows)
    tw = min(max(len(r.type) for r in rows), 22)
    dw = min(max(len(r.default) for r in rows), 16)
    col = kw + tw + dw + 6
    lines = [f"{'key':<{kw}}  {'type':<{tw}}  {'default':<{dw}}  description"]
    for r in rows:
        head = f"{r.key:<{kw}}  {r.type:<{tw}}  {r.default:<{dw}}  "
        wrapped = textwrap.wrap(r.description, max(width - col, 56), break_on_hyphens=False) or [""]
        if len(head) > col:  # a long type or default pushes the description to the next line
            lines.append(head.rstrip())
            lines += [" " * col + w for w in wrapped]
            continue
        lines.append((head + wrapped[0]).rstrip())
        lines += [" " * col + w for w in wrapped[1:]]
    return "\n".join(lines)


def keys_json() -> list[dict[str, str]]:
    return [asdict(r) for r in recipe_keys()]


def schema() -> dict[str, Any]:
    """The recipe's JSON schema (pydantic's ``model_json_schema``)."""
    return Recipe.model_json_schema()


if __name__ == "__main__":
    print(markdown(), end="")
