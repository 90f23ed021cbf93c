"""The run directory's files, as the trainer's modules import them: every name here is
:mod:`liandan.runs` (the one reader and writer of the layout), plus the trainer's :class:`Clock`."""

from __future__ import annotations

import time

from liandan.runs import (  # noqa: F401  (re-exported: the layout and its files live in liandan.runs)
    STATUSES,
    MetricsLog,
    RunDir,
    new_run_dir,
    raise_exists,
    read_json,
    read_metrics,
    write_json,
)


class Clock:
    """Seconds since it started, plus ``offset`` (a resumed run's wall time so far)."""

    def __init__(self, offset: float = 0.0) -> None:
        self.t0, self.offset = time.perf_counter(), offset

    def __call__(self) -> float:
        return self.offset + time.perf_counter() - self.t0
