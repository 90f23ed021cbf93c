"""The run directory of DESIGN.md: the one module that knows its file names and formats.

::

    RUN/recipe.yaml          the validated recipe, headed by the command that reproduces it
    RUN/data.json            the data facts (DataInfo): shapes, classes, normalisation, tokenizer
    RUN/summary.json         status running -> completed | stopped_early | diverged | interrupted | failed
    RUN/metrics.csv          one row per logged step or epoch (a fixed header)
    RUN/checkpoints/         step-NNNNNNNN/ (exact resume), last/best/final.safetensors
    RUN/doctor.json          the doctor's findings          RUN/report.html (+ figures/)  the report
    RUN/hf/                  Hugging Face models            RUN/adapter.safetensors       an adapter's tensors
    RUN/compress.json        a compressed run               RUN/<tokenizer>               a token run's tokenizer
    RUN/reward_model.json    a reward model

Every read goes through :mod:`liandan.paths` (checked against the agents' roots when they are
active), every write is atomic (temporary file, fsync, rename), and a file name taken from a
run's own files (the weights ``summary.json`` names, the tokenizer ``data.json`` names) must be
one plain component, so it cannot lead out of the run. Weights are tensors: the training layer
(:mod:`liandan.training.run`) loads and saves them, at the paths this module gives.

Base layer: this module imports only :mod:`liandan.errors`, :mod:`liandan.paths`,
:mod:`liandan.recipe` and the standard library.
"""

from __future__ import annotations

import csv
import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liandan.errors import LiandanError
from liandan.paths import check_path, component, open_checked, read_bytes, read_text

if TYPE_CHECKING:
    from liandan.recipe import Recipe

RECIPE = "recipe.yaml"
DATA = "data.json"
SUMMARY = "summary.json"
METRICS = "metrics.csv"
CHECKPOINTS = "checkpoints"
DOCTOR = "doctor.json"
REPORT = "report.html"
FIGURES = "figures"
TENSORBOARD = "tb"
HF = "hf"
ADAPTER = "adapter.safetensors"
PEFT_ADAPTER = "adapter"  # the same adapter in peft's format (adapter_config.json + adapter_model.safetensors)
COMPRESS = "compress.json"
REWARD_MODEL = "reward_model.json"
TOKENIZER = "tokenizer.json"  # the default name; data.json's ``tokenizer`` names the run's own

STATUSES = ("running", "completed", "stopped_early", "diverged", "interrupted", "failed")
FINISHED = ("completed", "stopped_early")  # a model was delivered: final weights and test metrics


# --- files ------------------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via temp file + fsync + rename (the old file or the new one, never half)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """``doc`` as the run directory's JSON (2-space indent, a final newline), atomically."""
    atomic_write_text(Path(path), json.dumps(doc, indent=2, default=float) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """A run file's JSON (checked against the agents' roots when they are active: :mod:`liandan.paths`)."""
    return json.loads(read_text(path, "run file"))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.csv as a list of dicts with numbers parsed."""
    with open_checked(path, "r", "run file", newline="") as f:
        return [{k: _num(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _num(v: str) -> Any:
    if v == "":
        return None
    try:
        f = float(v)
        return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() and "nan" not in v.lower() else f
    except ValueError:
        return v


class MetricsLog:
    """Append-only metrics.csv with a fixed header; can be cut back to N rows for exact resume."""

    def __init__(self, path: Path, metric_names: list[str]) -> None:
        self.path = Path(path)
        self.columns = ["epoch", "step", "split", "loss", *metric_names, "lr", "grad_norm", "wall_s"]
        if not self.path.exists():
            self.path.write_text(",".join(self.columns) + "\n")
        self.rows = self._count()
        self._open()

    def _open(self) -> None:
        self._fh = open(self.path, "a", newline="")  # noqa: SIM115 (kept open for the run)
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
        self._open()

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


# --- the directory ----------------------------------------------------------------------------


def raise_exists(path: Path) -> None:
    raise LiandanError(f"run directory {path} already holds a run; use `liandan resume {path}` or another --out")


def new_run_dir(name: str, out: str | Path | None) -> Path:
    """``out`` (created; refused when it already holds a run), else a fresh ``runs/<name>-<time>``."""
    if out is not None:
        path = Path(out)
        check_path(path, "run directory")  # a no-op unless the agents' roots are active
        if path.exists() and any(path.iterdir()) and ((path / SUMMARY).exists() or (path / CHECKPOINTS).exists()):
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


class RunDir:
    """A run directory's files: where each lives, and reading or writing it in its fixed format.

    ``RunDir(path)`` opens an existing directory (nothing is read until asked); :meth:`create`
    makes a new one. Missing optional files read as empty (``summary`` -> ``{}``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @classmethod
    def create(cls, name: str, out: str | Path | None) -> RunDir:
        """A new run directory: ``out``, or ``runs/<name>-<time>`` (see :func:`new_run_dir`)."""
        return cls(new_run_dir(name, out))

    # --- paths ------------------------------------------------------------------------------

    def file(self, name: Any, what: str = "run file") -> Path:
        """``RUN/<name>`` for one plain file name (no separator, no ``..``), e.g. one read from the
        run's own JSON; checked against the agents' roots when they are active."""
        name = component(name if isinstance(name, str) else repr(name), f"{self.path}: {what}")
        return check_path(self.path / name, what)

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def weights_file(self, name: Any) -> Path:
        """``RUN/checkpoints/<name>.safetensors`` for a plain weights ``name`` (``last``, ``best``, ``final``)."""
        name = component(name if isinstance(name, str) else repr(name), f"{self.path}: weights")
        return check_path(self.checkpoints / f"{name}.safetensors", "weights")

    def weights(self, name: str | None = None, summary: dict[str, Any] | None = None) -> Path:
        """The run's weights file: ``name``, else the one ``summary.json`` chose, else ``last``.
        The name is one plain file name (``summary.json`` is data: ``"../../x"`` cannot leave the run)."""
        summary = summary if summary is not None else self.summary()
        name = name or summary.get("weights", "last")
        path = self.weights_file(name)
        if not path.exists():
            raise LiandanError(f"{self.path}: no {name} weights (status {summary.get('status', 'unknown')})")
        return path

    def tokenizer_file(self, info: dict[str, Any] | None = None) -> Path:
        """The tokenizer file ``data.json`` names (``info``: its content when already read)."""
        info = info if info is not None else self.data_info()
        return self.file(info.get("tokenizer") or TOKENIZER, "tokenizer")

    # --- what it is ---------------------------------------------------------------------------

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def is_run(self) -> bool:
        return self.has(RECIPE) and self.has(DATA)

    def require(self) -> RunDir:
        """Self, once the directory holds a recipe and data facts; else the one-line user error."""
        check_path(self.path, "run directory")
        if not self.is_run():
            raise LiandanError(f"{self.path} is not a run directory (no {RECIPE} / {DATA})")
        return self

    # --- reading ------------------------------------------------------------------------------

    def recipe(self, overrides: list[str] | dict | None = None) -> Recipe:
        from liandan.recipe import load_recipe

        return load_recipe(self.path / RECIPE, overrides)

    def raw_recipe(self) -> dict[str, Any]:
        """recipe.yaml as a dict, not validated (to derive a new run's recipe from it)."""
        from liandan.recipe import load_dict

        return load_dict(self.path / RECIPE)

    def data_info(self) -> dict[str, Any]:
        return read_json(self.path / DATA)

    def summary(self) -> dict[str, Any]:
        return read_json(self.path / SUMMARY) if (self.path / SUMMARY).exists() else {}

    def status(self) -> str:
        return self.summary().get("status", "unknown")

    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.path / METRICS) if (self.path / METRICS).exists() else []

    def doctor(self) -> dict[str, Any] | None:
        return read_json(self.path / DOCTOR) if (self.path / DOCTOR).exists() else None

    def compress_doc(self) -> dict[str, Any]:
        """compress.json (a compressed run's method, options and measurements)."""
        f = self.path / COMPRESS
        if not f.is_file():
            raise LiandanError(f"{self.path} is not a compressed directory (no {COMPRESS})")
        try:
            return read_json(f)
        except json.JSONDecodeError as e:
            raise LiandanError(f"{f}: invalid JSON: {e}") from None

    # --- writing ------------------------------------------------------------------------------

    def write_recipe(self, recipe: Recipe, header: str) -> None:
        atomic_write_text(self.path / RECIPE, recipe.to_yaml(header))

    def write_data_info(self, info: dict[str, Any]) -> None:
        write_json(self.path / DATA, info)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.path / SUMMARY, summary)

    def write_compress_doc(self, doc: dict[str, Any]) -> None:
        write_json(self.path / COMPRESS, doc)

    def copy_from(self, src: RunDir, name: str) -> None:
        """``src``'s file ``name`` copied here byte for byte (read through the sandbox's checks)."""
        atomic_write_bytes(self.file(name), read_bytes(src.file(name), "run file"))

    def start(self, recipe: Recipe, header: str, info: dict[str, Any] | RunDir) -> None:
        """A run begins: recipe.yaml, data.json (a dict, or copied from another run with its
        tokenizer) and summary.json with status ``running``."""
        self.write_recipe(recipe, header)
        if isinstance(info, RunDir):
            self.copy_from(info, DATA)
            if (tok := info.data_info().get("tokenizer")):
                self.copy_from(info, tok)
        else:
            self.write_data_info(info)
        self.write_summary({"name": recipe.name, "status": "running"})

    def metrics_log(self, metric_names: list[str], name: str = METRICS) -> MetricsLog:
        return MetricsLog(self.file(name), metric_names)

    def remove(self, name: str) -> None:
        (self.path / name).unlink(missing_ok=True)
