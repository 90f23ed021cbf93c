"""What every exporter shares: finding the destination, writing it atomically, timing, export.json.

A failed export must never leave a half-written file where a deployment would pick it up, so
every exporter writes to a hidden temporary file in the destination's directory and renames it
into place (``os.replace`` is atomic on one filesystem) only after the file has been checked.
"""

from __future__ import annotations

import io
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout, suppress
from pathlib import Path
from typing import Any

from liandan.errors import LiandanError

MANIFEST = "export.json"


def require(*modules: str) -> None:
    """Refuse with one line when an optional package of the ``export`` extra is missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise LiandanError(f"export needs {', '.join(missing)}: pip install 'liandan[export]'")


def run_path(run_dir: str | Path) -> Path:
    """``run_dir`` as a Path, refused unless it is a finished run directory."""
    path = Path(run_dir)
    if not path.is_dir() or not (path / "recipe.yaml").is_file() or not (path / "data.json").is_file():
        raise LiandanError(f"{path} is not a run directory (no recipe.yaml / data.json)")
    return path


def destination(default_dir: Path, out: str | Path | None, default_name: str, suffix: str) -> Path:
    """The file to write: ``out`` (its directory must exist) or ``default_dir/default_name``; the
    directory must be writable (checked first, so the user hears the cause, not a cleanup's error)."""
    if out is None:
        path = Path(default_dir) / default_name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LiandanError(f"cannot create {path.parent}: {e.strerror or e} (give --out in a writable "
                               f"directory)") from None
    else:
        path = Path(out)
        if path.is_dir():
            raise LiandanError(f"--out {path} is a directory; give a file name ending in {suffix}")
        if not path.parent.is_dir():
            raise LiandanError(f"--out {path}: directory {path.parent} does not exist")
        if path.suffix.lower() != suffix:
            raise LiandanError(f"--out {path}: the file name must end in {suffix}")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise LiandanError(f"cannot write to {path.parent}: permission denied (read-only directory)")
    return path


PART = ".part-"  # hidden temporary files: .NAME.part-PID[.suffix] (ours), .NAME.tmp-PID (liandan.runs')
_STALE = re.compile(r"^\..+\.(?:part|tmp)-(\d+)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_parts(directory: Path) -> list[str]:
    """Delete the hidden ``.NAME.part-PID*`` / ``.NAME.tmp-PID`` files that an export killed
    mid-write (SIGKILL, power loss) left in ``directory``: only those whose process is gone (a
    live one, in this process or another, may still be writing). Returns the names removed."""
    removed = []
    for f in Path(directory).glob(".*"):
        m = _STALE.match(f.name)
        if m is None or _alive(int(m.group(1))):
            continue
        with suppress(OSError):
            f.unlink()
            removed.append(f.name)
    return removed


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; fsync and rename it onto ``path`` only if the
    block succeeds. Stale temporary files of killed exports are removed first; an OS error while
    writing (disk full, permissions) is one line naming its cause, and cleanup never masks it."""
    from liandan.runs import fsync_dir

    remove_stale_parts(path.parent)
    tmp = path.with_name(f".{path.stem}{PART}{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:
        raise LiandanError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        with suppress(OSError):
            for extra in tmp.parent.glob(tmp.name + "*"):  # e.g. an external-data side file
                extra.unlink(missing_ok=True)


@contextmanager
def silenced() -> Iterator[None]:
    """Swallow what a third-party exporter writes to stdout/stderr (progress, a whole FX graph when
    it gives up), at the file-descriptor level too; failures are reported as one line instead."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink, redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block on ``n`` torch intra-op threads, then restore the caller's setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def median_ms(fn: Callable[[], Any], repeats: int = 100, warmup: int = 10, blocks: int = 5,
              clock: Callable[[], float] = time.thread_time) -> float:
    """Time per call of ``fn()`` in milliseconds: the lowest of ``blocks`` block medians over
    ``repeats`` calls in all, on ``clock``. The default clock is this thread's CPU time
    (``CLOCK_THREAD_CPUTIME_ID``): for a single-threaded call it is the compute time, and unlike
    wall time it does not count the stretches another process had the core, which on the shared
    2-core sandbox spread identical exports' figures by 1.7x on one thread and 5x on two (the
    median shrugs off the odd slow call, the lowest block a slow stretch)."""
    for _ in range(warmup):
        fn()
    per_block = max(1, repeats // blocks)
    medians = []
    for _ in range(blocks):
        times = []
        for _ in range(per_block):
            t0 = clock()
            fn()
            times.append(clock() - t0)
        medians.append(statistics.median(times))
    return 1e3 * min(medians)


def write_manifest(path: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Merge ``entry`` into ``export.json`` beside ``path`` (keyed by the file name) and return it.

    One manifest per directory, so an ONNX file and several GGUF files of the same run (the
    default ``RUN_DIR/export/``) keep their numbers side by side. Written atomically (temporary
    file, fsync, rename: :func:`liandan.runs.atomic_write_text`)."""
    from liandan.runs import atomic_write_text

    manifest = path.parent / MANIFEST
    doc: dict[str, Any] = {}
    if manifest.is_file():
        try:
            doc = json.loads(manifest.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            doc = {}
    doc[path.name] = entry
    try:
        atomic_write_text(manifest, json.dumps(doc, indent=2) + "\n")
    except OSError as e:
        raise LiandanError(f"cannot write {manifest}: {e.strerror or e}") from None
    return entry


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (a user error is one line)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
