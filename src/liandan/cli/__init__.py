"""Command-line interface: one module per verb group, each thin over the public Python API.

Every module in this package adds its verbs to :data:`liandan.cli.app.app` when imported; they
import torch and the pillars lazily inside the verb so ``liandan --help`` stays fast.
Errors the user can fix (:class:`~liandan.errors.LiandanError`) print one line and exit 2;
usage errors are click's (exit 2); anything else is a bug (traceback, exit 1).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

from liandan.cli.app import app
from liandan.errors import LiandanError


def _load_commands() -> None:
    for m in pkgutil.iter_modules(__path__):
        if m.name != "app" and not m.name.startswith("_"):
            importlib.import_module(f"{__name__}.{m.name}")


def main(argv: list[str] | None = None) -> None:
    _load_commands()
    from liandan.cli.app import ARGV

    ARGV[:] = list(argv) if argv is not None else sys.argv[1:]
    try:
        app(args=argv, prog_name="liandan")
    except LiandanError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
