"""Sequence tests: make sure the sequence data sources are registered (data/sources.py imports them too)."""

from __future__ import annotations

import liandan.data.sequences  # noqa: F401
