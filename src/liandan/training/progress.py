"""A progress bar on a terminal (rich), nothing otherwise: CI logs get the plain epoch lines
the trainer prints anyway, not thousands of bar redraws."""

from __future__ import annotations

import sys


class Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if not (enabled and sys.stderr.isatty()):
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=True)
        self.task = self.bar.add_task("train", total=total, info="")
        self.bar.start()

    def update(self, step: int, info: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=info)

    def print(self, msg: str, fallback) -> None:
        """Print above the bar (or through ``fallback`` when there is none)."""
        if self.bar is not None:
            self.bar.console.print(msg, highlight=False, markup=False)
        else:
            fallback(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
