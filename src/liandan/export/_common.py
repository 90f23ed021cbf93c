"""What every exporter shares: finding the destination, writing it atomically, timing, export.json.

A failed export must never leave a half-written file where a deployment would pick it up, so
every exporter writes to a hidden temporary file in the destination's directory and renames it
into place (``os.replace`` is atomic on one filesystem) only after the file has been checked.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
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


def destination(run_dir: Path, out: str | Path | None, default_name: str, suffix: str) -> Path:
    """The file to write: ``out`` (its directory must exist) or ``RUN_DIR/export/default_name``."""
    if out is None:
        path = run_dir / "export" / default_name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    path = Path(out)
    if path.is_dir():
        raise LiandanError(f"--out {path} is a directory; give a file name ending in {suffix}")
    if not path.parent.is_dir():
        raise LiandanError(f"--out {path}: directory {path.parent} does not exist")
    if path.suffix.lower() != suffix:
        raise LiandanError(f"--out {path}: the file name must end in {suffix}")
    return path


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    tmp = path.with_name(f".{path.stem}.part-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
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


def median_ms(fn: Callable[[], Any], repeats: int = 100, warmup: int = 5) -> float:
    """Median wall time of ``fn()`` in milliseconds (robust to the odd scheduler hiccup)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def write_manifest(path: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Merge ``entry`` into ``export.json`` beside ``path`` (keyed by the file name) and return it.

    One manifest per directory, so an ONNX file and several GGUF files of the same run (the
    default ``RUN_DIR/export/``) keep their numbers side by side."""
    manifest = path.parent / MANIFEST
    doc: dict[str, Any] = {}
    if manifest.is_file():
        try:
            doc = json.loads(manifest.read_text())
        except json.JSONDecodeError:
            doc = {}
    doc[path.name] = entry
    tmp = manifest.with_name(f".{MANIFEST}.part-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, manifest)
    return entry


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (a user error is one line)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
