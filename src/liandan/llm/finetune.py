"""``liandan finetune``: train a recipe starting from a finished run, optionally through an adapter.

It is :func:`liandan.train` with ``model.from_run`` set (and ``adapter``): the run directory,
the doctor, checkpoints, resume and the report are the same as for any run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from liandan.errors import LiandanError


def finetune(base_run: str | Path, recipe: str | Path | dict | None = None, *, adapter: str | dict | None = None,
             overrides: list[str] | None = None, out: str | Path | None = None, quiet: bool = False) -> Any:
    """Fine-tune ``base_run`` on ``recipe`` (a preset, file or dict; default: the base run's own
    recipe) with ``adapter`` (a method name such as ``"lora"``, or a section
    ``{"name": "lora", "r": 8}``; default: the recipe's, else every weight trains).
    ``overrides`` apply last. Returns the finished :class:`~liandan.training.run.Run`."""
    from liandan.paths import check_path
    from liandan.recipe import load_dict
    from liandan.training.api import train

    base = check_path(base_run, "base run")  # a no-op unless the agents' roots are active
    if not (base / "recipe.yaml").is_file():
        raise LiandanError(f"{base} is not a run directory (no recipe.yaml)")
    raw = load_dict(recipe if recipe is not None else base)
    raw.setdefault("model", {})["from_run"] = str(base)
    if adapter is not None:
        raw["adapter"] = {"name": adapter} if isinstance(adapter, str) else dict(adapter)
    if recipe is None:
        raw["name"] = f"{raw.get('name', 'run')}-ft"
    return train(raw, overrides=overrides, out=out, quiet=quiet)
