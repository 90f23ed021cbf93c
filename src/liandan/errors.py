"""User-facing errors.

A :class:`LiandanError` is a mistake the user can fix (a bad recipe, bad data, a missing file).
The CLI prints it as one line ``error: ...`` on stderr and exits with code 2; anything else
escaping the CLI is a bug (exit code 1).
"""

from __future__ import annotations


class LiandanError(Exception):
    """An error in the user's input, reported as one line and exit code 2."""


def did_you_mean(name: str, allowed: list[str]) -> str:
    """Return ' (did you mean X?)' when a close match exists, else ''."""
    import difflib

    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
