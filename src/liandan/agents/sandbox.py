"""The path sandbox of the agents pillar: every path a client passes must lie inside an allowed root.

An MCP client (or an LLM behind one) is not the user: the spec's security principles say servers
MUST validate all inputs and enforce access controls, and servers touching local files SHOULD
keep to root boundaries (modelcontextprotocol spec 2025-11-25, ``server/tools`` "Security
considerations" and ``client/roots``; roots became informational in 2026-07-28, SEP-2577, so the
directories come from server configuration: ``liandan mcp --root DIR``).

The algorithm is the reference filesystem server's ``validatePath``
(modelcontextprotocol/servers, ``src/filesystem/path-validation.ts``), ported to Python:

1. roots are ``~``-expanded, made absolute and ``realpath``-ed once, at start;
2. a client path: reject NUL bytes and empty strings, expand ``~``, resolve a relative path
   against the *first* root;
3. ``realpath`` it (symlinks followed, ``..`` resolved by the OS) and require
   ``os.path.commonpath([real, root]) == root`` for some root: a comparison of whole path
   components, so ``/a/bc`` never passes for ``/a/b``;
4. a path that does not exist yet (an output directory) is also checked through the
   ``realpath`` of its parent, so a dangling symlink cannot point outside.

The *resolved* path is what the tools use afterwards. That check covers what the client typed;
the files opened on its behalf afterwards (the files of a data folder, the ``recipe.yaml``,
``summary.json``, weights and tokenizer of a run, a teacher or base run named in a recipe) are
checked again when they are opened: each tool call runs under :meth:`Sandbox.confined`, which
activates the roots for :mod:`liandan.paths`, the guard the low-level openers consult (their
realpath must stay inside, a symlink swapped in between check and open is caught there).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

from liandan.errors import LiandanError
from liandan.paths import confine, inside, read_text

DEFAULT_ROOT = "runs"


class SandboxError(LiandanError):
    """A client path outside the allowed roots (or malformed): reported as a one-line tool error."""


PATH_OPTIONS = ("path",)  # data-source options that name files (csv, image_folder, mnist_idx, text, ...)


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(path)))


class Sandbox:
    """Allowed root directories and the check every client path goes through.

    ``roots`` defaults to ``./runs`` (created if missing). Explicit roots must exist unless
    ``create=True``. The first root is where relative paths and new runs go.
    """

    def __init__(self, roots: Iterable[str | os.PathLike[str]] | None = None, *, create: bool = False) -> None:
        given = [os.fspath(r) for r in roots] if roots is not None else []
        if not given:
            given, create = [DEFAULT_ROOT], True
        resolved: list[str] = []
        for r in given:
            if not r or "\x00" in r:
                raise SandboxError(f"invalid root directory {r!r}")
            real = _real(r)
            if create:
                os.makedirs(real, exist_ok=True)
            if not os.path.isdir(real):
                raise SandboxError(f"root directory {r} does not exist (or is not a directory)")
            if real not in resolved:
                resolved.append(real)
        self.roots: tuple[str, ...] = tuple(resolved)

    def __repr__(self) -> str:
        return f"Sandbox(roots={list(self.roots)!r})"

    def contains(self, real: str) -> bool:
        """Is the (already realpath-ed) ``real`` inside some root?"""
        return any(inside(real, root) for root in self.roots)

    def confined(self) -> AbstractContextManager[tuple[str, ...]]:
        """Activate the roots for :mod:`liandan.paths`: every file opened in the block is checked."""
        return confine(self.roots)

    def read_text(self, path: str | os.PathLike[str], what: str = "file") -> str:
        """The text of ``path`` checked when opened (a symlink out of the roots is refused): for code
        that serves a file outside a tool call, e.g. an MCP resource."""
        with self.confined():
            return read_text(path, what)

    def resolve(self, path: str | os.PathLike[str], *, must_exist: bool = False, what: str = "path") -> Path:
        """The real path of client-supplied ``path`` if it lies inside a root; else :class:`SandboxError`.

        ``what`` names the argument in messages ("run directory", "recipe file", ...).
        """
        if not isinstance(path, (str, os.PathLike)):
            raise SandboxError(f"{what}: expected a path string, got {type(path).__name__}")
        text = os.fspath(path)
        if not isinstance(text, str):
            raise SandboxError(f"{what}: expected a text path")
        if "\x00" in text:
            raise SandboxError(f"{what}: NUL byte in path")
        if not text.strip():
            raise SandboxError(f"{what}: empty path")
        text = os.path.expanduser(text)
        if not os.path.isabs(text):
            text = os.path.join(self.roots[0], text)
        real = os.path.realpath(os.path.normpath(text))
        if not self.contains(real):
            raise SandboxError(f"{what} {os.fspath(path)!r} is outside the allowed directories "
                               f"({', '.join(self.roots)})")
        if not os.path.lexists(real):
            if must_exist:
                raise SandboxError(f"{what} {os.fspath(path)!r} does not exist")
            parent = os.path.realpath(os.path.dirname(real))
            if not self.contains(parent):
                raise SandboxError(f"{what} {os.fspath(path)!r}: its parent is outside the allowed directories")
        return Path(real)

    def run_dir(self, path: str) -> Path:
        """An existing run directory (it holds ``recipe.yaml``) inside the roots."""
        real = self.resolve(path, must_exist=True, what="run directory")
        if not (real / "recipe.yaml").is_file():
            raise SandboxError(f"{path!r} is not a run directory (no recipe.yaml)")
        return real

    def output_dir(self, path: str | None, name: str) -> Path:
        """Where a new run goes: ``path`` (must not exist, or be an empty directory) or
        ``<first root>/<name>-<timestamp>``. Never an existing non-empty directory, so training
        only ever adds files (MCP ``destructiveHint: false``)."""
        if path is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            base = Path(self.roots[0]) / f"{_safe_name(name)}-{stamp}"
            out, i = base, 1
            while out.exists():
                i += 1
                out = base.with_name(f"{base.name}-{i}")
            return out
        out = self.resolve(path, what="output directory")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise SandboxError(f"output directory {path!r} already exists and is not empty; pick a new one")
        return out


def _safe_name(name: str) -> str:
    """A recipe name as one path component (the name comes from client-supplied recipes)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return cleaned or "run"


def check_recipe(sandbox: Sandbox, doc: dict[str, Any]) -> dict[str, Any]:
    """Check the file paths a client's recipe names (data files, a base run, a teacher, the doctor's
    memory) against the roots; relative ones resolve against the first root like every other client
    path. (The files *inside* them are checked again when opened: :mod:`liandan.paths`.)"""
    data = doc.get("data", {})
    for key in PATH_OPTIONS:
        if isinstance(data.get(key), str):
            data[key] = str(sandbox.resolve(data[key], must_exist=True, what=f"data.{key}"))
    model = doc.get("model", {})
    if model.get("from_run"):
        model["from_run"] = str(sandbox.run_dir(str(model["from_run"])))
    loss = doc.get("loss") or {}
    if loss.get("teacher"):  # distillation reads a teacher run
        loss["teacher"] = str(sandbox.run_dir(str(loss["teacher"])))
    doctor = doc.get("doctor", {})
    if doctor.get("memory"):
        doctor["memory"] = str(sandbox.resolve(str(doctor["memory"]), what="doctor.memory"))
    return doc


def check_source_spec(sandbox: Sandbox, spec: str) -> str:
    """A data-source spec ``NAME[:k=v,...]`` with its file options checked and made absolute."""
    from liandan.evaluation.sources import SHIFTS, parse_spec

    name, arg = parse_spec(spec)
    if name in SHIFTS or not arg:
        return spec.strip()
    parts = []
    for part in filter(None, (p.strip() for p in arg.split(","))):
        key, eq, val = part.partition("=")
        if eq and key.strip() in PATH_OPTIONS:
            real = str(sandbox.resolve(val.strip(), must_exist=True, what=f"source option {key.strip()}"))
            if "," in real:
                raise SandboxError(f"source option {key.strip()}: a path with a comma cannot be passed in a spec")
            part = f"{key.strip()}={real}"
        parts.append(part)
    return f"{name}:{','.join(parts)}"


def recipe_source(sandbox: Sandbox, recipe: str) -> dict[str, Any]:
    """A preset's or a sandboxed file's raw recipe dict (never a path liandan would resolve itself)."""
    import yaml

    from liandan.errors import did_you_mean
    from liandan.recipe import load_dict, preset_names, preset_text

    if recipe in preset_names():
        return yaml.safe_load(preset_text(recipe))
    looks_like_path = recipe.endswith((".yaml", ".yml")) or "/" in recipe or "\\" in recipe
    if not looks_like_path:
        names = preset_names()
        raise LiandanError(f"no preset named {recipe!r}{did_you_mean(recipe, names)}; presets: "
                           f"{', '.join(names)} (or pass a recipe .yaml path)")
    path = sandbox.resolve(recipe, must_exist=True, what="recipe file")
    if path.is_dir():
        path = sandbox.resolve(str(path / "recipe.yaml"), must_exist=True, what="recipe file")
    return load_dict(path)  # opened under the roots (liandan.paths): a link swapped in since is refused
