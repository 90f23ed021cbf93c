"""``liandan list KIND`` and ``liandan explain``-style listings of registries and presets."""

from __future__ import annotations

import inspect

import typer

from liandan.cli.app import app, print_json

KINDS = ("models", "data", "losses", "optimizers", "schedules", "presets", "rules", "tasks", "adapters")


@app.command("list")
def list_(
    kind: str = typer.Argument(..., help=f"One of: {', '.join(KINDS)}."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show each entry's options and defaults."),
    json_: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """List registered models, data sources, losses, optimizers, schedules, presets, rules, tasks or adapters."""
    from liandan.errors import LiandanError

    if kind not in KINDS:
        raise LiandanError(f"cannot list {kind!r}; choose one of: {', '.join(KINDS)}")
    if kind == "presets":
        from liandan.recipe import preset_names, preset_text

        rows = []
        for n in preset_names():
            lines = [ln[1:].strip() for ln in preset_text(n).splitlines() if ln.startswith("#")]
            rows.append({"name": n, "description": lines[1] if len(lines) > 1 else "", "options": {}})
    else:
        from liandan.registry import REGISTRIES

        rows = [{"name": e.name, "description": e.description, "options": _options(e) if kind != "tasks" else {}}
                for e in REGISTRIES[kind].entries()]
    if json_:
        print_json(rows)
        return
    width = max((len(r["name"]) for r in rows), default=0)
    for r in rows:
        typer.echo(f"{r['name']:<{width}}  {r['description']}")
        if verbose:
            for k, v in r["options"].items():
                typer.echo(f"{'':<{width}}    {k} = {v}")


def _options(entry) -> dict[str, str]:
    out = {}
    for n, p in entry.options().items():
        if n in ("params", "optimizer", "total_steps"):
            continue
        default = "(required)" if p.default is inspect.Parameter.empty else repr(p.default)
        out[n] = default
    return out
