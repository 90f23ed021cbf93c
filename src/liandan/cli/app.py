"""The typer application object that every CLI module adds its verbs to."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

# Rich-formatted help costs ~0.25 s of imports (rich.markdown and friends) on every call;
# plain click help keeps `liandan --help` instant. LIANDAN_RICH_HELP=1 brings it back.
os.environ.setdefault("TYPER_USE_RICH", os.environ.get("LIANDAN_RICH_HELP", "0"))

import typer  # noqa: E402

app = typer.Typer(
    name="liandan",
    help="liandan (炼丹): train a model from one recipe, diagnose the run, inspect and ship the model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from liandan import __version__

        typer.echo(f"liandan {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print liandan's version and exit.")) -> None:
    """liandan (炼丹): train a model from one recipe, diagnose the run, inspect and ship the model."""


ARGV: list[str] = []  # the command line as given to liandan.cli.main (re-used by --nproc launches)


def print_json(doc: Any) -> None:
    """Print one JSON document on stdout (the contract of every ``--json`` flag)."""
    sys.stdout.write(json.dumps(doc, indent=2, default=_jsonable) + "\n")


def _jsonable(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "__fspath__"):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def parse_sets(sets: list[str] | None) -> list[str]:
    return list(sets or [])
