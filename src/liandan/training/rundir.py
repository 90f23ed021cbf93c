"""The run directory of DESIGN.md: recipe.yaml, data.json, metrics.csv, tb/, checkpoints/,
summary.json (status running → completed | stopped_early | diverged | interrupted | failed)."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from liandan.training.checkpoint import atomic_write_text

STATUSES = ("running", "completed", "stopped_early", "diverged", "interrupted", "failed")


def new_run_dir(name: str, out: str | Path | None) -> Path:
    if out is not None:
        from liandan.paths import check_path

        path = Path(out)
        check_path(path, "run directory")  # a no-op unless the agents' roots are active
        if path.exists() and any(path.iterdir()):
            summary = path / "summary.json"
            if summary.exists() or (path / "checkpoints").exists():
                raise_exists(path)
        path.mkdir(parents=True, exist_ok=True)
        return path
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path("runs") / f"{name}-{stamp}"
    i = 1
    while path.exists():
        i += 1
        path = Path("runs") / f"{name}-{stamp}-{i}"
    path.mkdir(parents=True)
    return path


def raise_exists(path: Path) -> None:
    from liandan.errors import LiandanError

    raise LiandanError(f"run directory {path} already holds a run; use `liandan resume {path}` or another --out")


class MetricsLog:
    """Append-only metrics.csv with a fixed header; can be cut back to N rows for exact resume."""

    def __init__(self, path: Path, metric_names: list[str]) -> None:
        self.path = path
        self.columns = ["epoch", "step", "split", "loss", *metric_names, "lr", "grad_norm", "wall_s"]
        if not path.exists():
            path.write_text(",".join(self.columns) + "\n")
        self.rows = self._count()
        self._fh = open(path, "a", newline="")  # noqa: SIM115 (kept open for the run)
        self._writer = csv.writer(self._fh)

    def _count(self) -> int:
        with open(self.path) as f:
            return max(0, sum(1 for _ in f) - 1)

    def truncate(self, rows: int) -> None:
        """Keep the header and the first ``rows`` rows (drop what a killed run wrote after its checkpoint)."""
        self._fh.close()
        lines = self.path.read_text().splitlines(keepends=True)
        atomic_write_text(self.path, "".join(lines[: rows + 1]))
        self.rows = rows
        self._fh = open(self.path, "a", newline="")  # noqa: SIM115
        self._writer = csv.writer(self._fh)

    def write(self, row: dict[str, Any]) -> None:
        vals = []
        for c in self.columns:
            v = row.get(c, "")
            vals.append(f"{v:.6g}" if isinstance(v, float) else v)
        self._writer.writerow(vals)
        self._fh.flush()
        self.rows += 1

    def close(self) -> None:
        self._fh.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.csv as a list of dicts with numbers parsed."""
    from liandan.paths import open_checked

    rows = []
    with open_checked(path, "r", "run file", newline="") as f:
        for r in csv.DictReader(f):
            rows.append({k: _num(v) for k, v in r.items()})
    return rows


def _num(v: str) -> Any:
    if v == "":
        return None
    try:
        f = float(v)
        return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() and "nan" not in v.lower() else f
    except ValueError:
        return v


def write_json(path: Path, doc: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(doc, indent=2, default=float) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """A run file's JSON (checked against the agents' roots when they are active: :mod:`liandan.paths`)."""
    from liandan.paths import read_text

    return json.loads(read_text(path, "run file"))


class Clock:
    def __init__(self, offset: float = 0.0) -> None:
        self.t0, self.offset = time.perf_counter(), offset

    def __call__(self) -> float:
        return self.offset + time.perf_counter() - self.t0


def csv_text(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()
