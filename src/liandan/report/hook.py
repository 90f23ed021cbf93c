"""The report at the end of ``liandan train``: a post-run hook (the ``liandan.run_hooks`` entry
point), so the trainer renders it without importing this pillar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from liandan.recipe import Recipe
from liandan.registry import register_run_hook


@register_run_hook("report")
def report_after_run(run_dir: Path, recipe: Recipe, summary: dict[str, Any], echo: Any) -> None:
    """Write RUN/report.html when the recipe asks for it (``report: true``)."""
    if recipe.report:
        from liandan.report.write import write_report

        write_report(run_dir)
