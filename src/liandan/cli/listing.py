"""``liandan list KIND`` and ``liandan explain``-style listings of registries and presets."""

from __future__ import annotations

import inspect
import shutil
import textwrap

import typer

from liandan.cli.app import app, print_json

KINDS = ("models", "data", "losses", "optimizers", "schedules", "presets", "rules", "tasks", "adapters",
         "callbacks")
# Kinds whose entries take no options from a recipe: a rule's or a task's parameters are the framework's.
NO_OPTIONS = ("presets", "rules", "tasks")


@app.command("list")
def list_(
    kind: str = typer.Argument(..., help=f"One of: {', '.join(KINDS)}."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show each entry's options, defaults and help."),
    json_: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """List registered models, data sources, losses, optimizers, schedules, presets, rules, tasks, adapters or
    callbacks."""
    from liandan.errors import LiandanError

    if kind not in KINDS:
        raise LiandanError(f"cannot list {kind!r}; choose one of: {', '.join(KINDS)}")
    if kind == "presets":
        from liandan.recipe import preset_names, preset_text

        rows = []
        for n in preset_names():
            lines = [ln[1:].strip() for ln in preset_text(n).splitlines() if ln.startswith("#")]
            rows.append({"name": n, "description": lines[1] if len(lines) > 1 else "", "options": {}, "help": {}})
    else:
        from liandan.registry import INFERRED, REGISTRIES

        inferred = INFERRED if kind == "models" else ()
        rows = [_row(e, kind, inferred) for e in REGISTRIES[kind].entries()]
    if json_:
        print_json(rows)
        return
    width = max((len(r["name"]) for r in rows), default=0)
    for r in rows:
        typer.echo(f"{r['name']:<{width}}  {r['description']}")
        if verbose:
            for line in option_lines(r["options"], r["help"], indent=width + 4):
                typer.echo(line)


def _row(entry, kind: str, inferred: tuple[str, ...]) -> dict:
    if kind in NO_OPTIONS:
        return {"name": entry.name, "description": entry.description, "options": {}, "help": {}}
    helps = entry.option_help(inferred)
    params = entry.options()
    options = {n: "(required)" if params[n].default is inspect.Parameter.empty else repr(params[n].default)
               for n in helps}
    return {"name": entry.name, "description": entry.description, "options": options, "help": helps}


def option_lines(options: dict[str, str], helps: dict[str, str], *, indent: int = 4,
                 width: int | None = None) -> list[str]:
    """``name = default  — help`` per option: names and defaults in aligned columns, the help wrapped
    to the terminal under its own column (or on the next lines when the columns leave too little room)."""
    if not options:
        return []
    width = width or min(shutil.get_terminal_size((120, 24)).columns, 120)
    nw = max(len(n) for n in options)
    dw = min(max(len(d) for d in options.values()), 16)  # a long default overflows its column
    out = []
    for n, d in options.items():
        head = f"{'':<{indent}}{n:<{nw}} = {d:<{dw}}"
        text = helps.get(n) or ""
        if not text:
            out.append(head.rstrip())
            continue
        col = len(head) + 4  # the help column: after "  — "
        if width - col >= 40:
            lines = textwrap.wrap(text, width - col, break_on_hyphens=False) or [""]
            out.append(f"{head}  — {lines[0]}")
            out += [" " * col + ln for ln in lines[1:]]
        else:  # a very long default: the help goes under the option
            out.append(head.rstrip())
            out += textwrap.wrap(f"— {text}", width, initial_indent=" " * (indent + 4),
                                 subsequent_indent=" " * (indent + 6), break_on_hyphens=False)
    return out
