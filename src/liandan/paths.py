"""File confinement: while allowed roots are active, every file liandan opens must resolve inside them.

The agents pillar serves clients that are not the user (an MCP or A2A client, an LLM behind
one). Checking the paths a client *types* is not enough: a folder inside a root can hold a
symlink to ``/etc``, a run directory's ``recipe.yaml`` can name ``data.path: /etc/passwd``, its
``summary.json`` can name ``"weights": "../../../elsewhere"``. So the low-level openers (data
sources, run files, weights, tokenizers, memory stores) consult this module *at the moment they
open a file*, and the agents layer activates the roots around each tool call::

    with confine(["/srv/runs"]):          # liandan.agents.tools does this per call
        check_path("/srv/runs/x/leak.txt")  # LiandanError when its realpath leaves the roots

Outside :func:`confine` every function here is a plain open (``check_path`` is a no-op), so the
CLI and ``import liandan`` are unchanged. The roots live in a :class:`contextvars.ContextVar`:
each tool call (each worker thread, each asyncio task) sees its own, nothing leaks between them.

Time of check vs time of use: :func:`open_checked` resolves the path, checks it, opens the
*resolved* path with ``O_NOFOLLOW`` (a final component swapped for a symlink since the check
fails with ``ELOOP``) and then checks what the descriptor really is (``/proc/self/fd/N`` on
Linux, else the inode of the checked path), so an intermediate folder swapped for a symlink is
caught too. Libraries that insist on a path name (safetensors, tokenizers) get the descriptor's
``/proc/self/fd/N`` name from :func:`checked_file`: they re-open the very inode that was checked.
A file outside the roots is never read, so no error message can quote its content.

This module imports nothing of liandan but :mod:`liandan.errors` (it sits at the bottom).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import IO, Any

from liandan.errors import LiandanError

PathLike = str | os.PathLike[str]
_ROOTS: ContextVar[tuple[str, ...] | None] = ContextVar("liandan_allowed_roots", default=None)
_PROC_FD = sys.platform.startswith("linux") and os.path.isdir("/proc/self/fd")
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class OutsideRootsError(LiandanError):
    """A file that resolves outside the allowed roots (or changed while it was being opened)."""


def realpath(path: PathLike) -> str:
    """``path`` absolute, ``~``-expanded and with every symlink and ``..`` resolved."""
    return os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


def inside(real: str, root: str) -> bool:
    """Is the resolved ``real`` equal to or below the resolved ``root``? Whole path components are
    compared (``/a/bc`` is not inside ``/a/b``)."""
    try:
        return os.path.commonpath([real, root]) == root
    except ValueError:  # different drives (Windows), or a mix of absolute and relative paths
        return False


def active_roots() -> tuple[str, ...] | None:
    """The roots in force for this context, or None when file access is not confined."""
    return _ROOTS.get()


@contextlib.contextmanager
def confine(roots: Iterable[PathLike]) -> Iterator[tuple[str, ...]]:
    """Confine the file access of this context (thread, task) to ``roots`` until the block ends."""
    real = tuple(dict.fromkeys(realpath(r) for r in roots))
    if not real:
        raise ValueError("confine() needs at least one root")
    token = _ROOTS.set(real)
    try:
        yield real
    finally:
        _ROOTS.reset(token)


def state_home() -> Path:
    """Where liandan keeps its own state (the doctor's memory, the CPU peak-FLOPS cache): under
    confinement ``$LIANDAN_HOME`` if it lies inside the roots, else ``<first root>/.liandan``
    (nothing is written outside the roots on a client's behalf); otherwise ``$LIANDAN_HOME``,
    else ``~/.liandan``."""
    home = os.environ.get("LIANDAN_HOME")
    roots = active_roots()
    if roots is None:
        return Path(home) if home else Path.home() / ".liandan"
    if home and any(inside(realpath(home), r) for r in roots):
        return Path(realpath(home))
    return Path(roots[0]) / ".liandan"


def _refuse(path: PathLike, what: str, roots: tuple[str, ...], why: str = "leads outside") -> OutsideRootsError:
    return OutsideRootsError(f"{what} {os.fspath(path)} {why} the allowed directories ({', '.join(roots)})")


def check_path(path: PathLike, what: str = "file", roots: tuple[str, ...] | None = None) -> Path:
    """``path`` resolved (realpath) when it lies inside the active (or given) roots; else
    :class:`OutsideRootsError` naming ``path`` (never the target of its symlinks). With no roots
    active it returns ``Path(path)`` untouched: a no-op outside the agents' sandbox."""
    roots = roots if roots is not None else active_roots()
    if roots is None:
        return Path(path)
    text = os.fspath(path)
    if "\x00" in text:
        raise OutsideRootsError(f"{what}: NUL byte in path")
    real = realpath(text)
    if not any(inside(real, r) for r in roots):
        raise _refuse(path, what, roots)
    return Path(real)


def verify_fd(fd: int, path: PathLike, what: str = "file", roots: tuple[str, ...] | None = None) -> None:
    """Under confinement, the file open on ``fd`` (opened from ``path``) must lie inside the roots:
    a swap between the check and the open shows here. For writers that open files themselves."""
    roots = roots if roots is not None else active_roots()
    if roots is not None:
        _verify_fd(fd, realpath(path), path, what, roots)


def _verify_fd(fd: int, real: str, path: PathLike, what: str, roots: tuple[str, ...]) -> None:
    if _PROC_FD:
        try:
            opened = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            opened = ""
        if opened.endswith(" (deleted)") or not any(inside(opened, r) for r in roots):
            raise _refuse(path, what, roots, "changed while being opened and now leads outside")
        return
    st, now = os.fstat(fd), os.stat(real, follow_symlinks=False)
    if (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino):
        raise _refuse(path, what, roots, "changed while being opened; refused, it may lead outside")


def _open_fd(path: PathLike, what: str, roots: tuple[str, ...]) -> int:
    real = str(check_path(path, what, roots))
    try:
        fd = os.open(real, os.O_RDONLY | NOFOLLOW | CLOEXEC)
    except OSError as e:  # as open() raises them (FileNotFoundError, ...), but for a last-moment link
        if e.errno == errno.ELOOP:
            why = "became a symlink while being opened; refused, it may lead outside"
            raise _refuse(path, what, roots, why) from None
        raise
    try:
        _verify_fd(fd, real, path, what, roots)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_checked(path: PathLike, mode: str = "rb", what: str = "file", *, roots: tuple[str, ...] | None = None,
                 **kwargs: Any) -> IO[Any]:
    """``open(path, mode)`` for reading; under confinement (active or given ``roots``) the file is
    checked, opened without following a last-moment symlink and verified after the open."""
    if any(c in mode for c in "wax+"):
        raise ValueError("open_checked opens files for reading only")
    roots = roots if roots is not None else active_roots()
    if roots is None:
        return open(path, mode, **kwargs)  # noqa: SIM115 (the caller closes it)
    return os.fdopen(_open_fd(path, what, roots), mode, **kwargs)


def read_bytes(path: PathLike, what: str = "file") -> bytes:
    """The bytes of ``path`` (checked under confinement)."""
    with open_checked(path, "rb", what) as f:
        return f.read()


def read_text(path: PathLike, what: str = "file", encoding: str | None = None, errors: str | None = None) -> str:
    """The text of ``path`` as ``Path.read_text`` reads it (checked under confinement)."""
    with open_checked(path, "r", what, encoding=encoding, errors=errors) as f:
        return f.read()


@contextlib.contextmanager
def checked_file(path: PathLike, what: str = "file", roots: tuple[str, ...] | None = None) -> Iterator[str]:
    """A file name to hand to a library that opens files itself (safetensors, tokenizers).

    Not confined: ``str(path)``. Confined: the file is opened and checked as in :func:`open_checked`
    and the name is ``/proc/self/fd/N`` (Linux), which re-opens that very inode; elsewhere the
    checked real path."""
    roots = roots if roots is not None else active_roots()
    if roots is None:
        yield os.fspath(path)
        return
    fd = _open_fd(path, what, roots)
    try:
        yield f"/proc/self/fd/{fd}" if _PROC_FD else str(check_path(path, what, roots))
    finally:
        os.close(fd)


def check_tree(entries: Iterable[Path], what: str = "file") -> list[Path]:
    """``entries`` (e.g. a folder's ``rglob``) as a list, each checked under confinement: one
    symlink leading outside (to a file or a folder) refuses the whole folder, naming that entry."""
    roots = active_roots()
    out = list(entries)
    if roots is not None:
        for e in out:
            check_path(e, what, roots)
    return out


def component(name: str, what: str) -> str:
    """``name`` if it is one plain path component (no separator, not ``.``/``..``, no NUL): a file
    name read from a run's own files cannot walk out of the run directory."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "\x00" in name
            or any(sep in name for sep in ("/", "\\", os.sep, os.altsep or "/"))):
        raise LiandanError(f"{what}: {name!r} is not a plain file name inside the run directory")
    return name
