"""The run report: ``report.html`` (self-contained) and ``figures/*.png`` beside it.

``write_report(run_dir)`` is what ``liandan report`` and the end of ``liandan train`` call.
"""

from __future__ import annotations

from liandan.report.write import write_report

__all__ = ["write_report"]
