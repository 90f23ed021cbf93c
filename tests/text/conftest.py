"""Text tests: the token sources register on import (data/sources.py imports them too)."""

from __future__ import annotations

import liandan.data.text  # noqa: F401
