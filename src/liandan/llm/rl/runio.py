"""Opening a language-model run for RL and writing the run directory an RL method produces.

The output is an ordinary run directory (DESIGN.md): ``recipe.yaml`` (the base run's recipe,
renamed; with an adapter, ``model.from_run`` names the base and ``adapter`` the method, exactly
as a ``liandan finetune`` run), ``data.json`` and the tokenizer (copied: the run loads without
its base), ``metrics.csv``, ``checkpoints/final.safetensors`` and ``summary.json``, so
:func:`liandan.load_run`, ``liandan generate`` and ``liandan evaluate`` read it like any run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from liandan.errors import LiandanError
from liandan.runs import REWARD_MODEL, RunDir

REWARD_MODEL_JSON = REWARD_MODEL


def check_lm_run(run_dir: str | Path, verb: str) -> Path:
    """``run_dir`` as a Path once it is known to be a finished language-model run (cheap checks
    first: data.json is read before any model is built)."""
    from liandan.registry import TASKS
    from liandan.training.tasks import task_class

    rd = RunDir(run_dir)
    if rd.has(REWARD_MODEL):
        raise LiandanError(f"{rd.path} is a reward model, not a language-model run; {verb} needs an lm run")
    info = rd.require().data_info()
    kind = info.get("task")
    if not (kind in TASKS and task_class(kind).generates_text and info.get("tokenizer")):
        raise LiandanError(f"{verb} needs a language-model run (task lm); {rd.path} is a {kind!r} run")
    return rd.path


def open_policy(base: Path, adapter: str | dict | None, name_suffix: str) -> tuple[nn.Module, Any, Any, Any]:
    """(model, recipe, run, tokenizer) to fine-tune from ``base``: its trained weights, every
    weight trainable; or frozen under a new ``adapter``; or, when the base was itself fine-tuned
    through an adapter, that adapter (only) trainable."""
    from liandan.data.tokenize import load_tokenizer
    from liandan.recipe import load_recipe
    from liandan.training.run import build_recipe_model, load_run

    run = load_run(base)
    if adapter is not None and run.recipe.adapter is not None:
        raise LiandanError(f"adapter: {base} already trains through a {run.recipe.adapter.name!r} adapter; "
                           "RL fine-tunes that adapter (leave adapter out)")
    raw = run.files.raw_recipe()
    raw["name"] = f"{raw.get('name', 'run')}-{name_suffix}"
    if adapter is not None:
        raw.setdefault("model", {})["from_run"] = str(base)
        raw["adapter"] = {"name": adapter} if isinstance(adapter, str) else dict(adapter)
        recipe = load_recipe(raw)
        model = build_recipe_model(recipe, run.info)  # the base's weights, frozen, the adapter in place
    else:
        recipe = load_recipe(raw)
        model = run.model
        if recipe.adapter is None:
            for p in model.parameters():
                p.requires_grad_(True)
    return model.eval(), recipe, run, load_tokenizer(run.files.tokenizer_file(run.info.to_dict()))


def start_run_dir(base: Path, recipe, header: str, out: str | Path | None) -> Path:
    """A new run directory with the recipe, the base's data facts and tokenizer, status running."""
    rd = RunDir.create(recipe.name, out)
    rd.start(recipe, header, RunDir(base))
    return rd.path


def finish_run_dir(out_dir: Path, model: nn.Module, recipe, summary: dict[str, Any]) -> None:
    """Weights (and the adapter's tensors alone, as a fine-tune writes them) and summary.json."""
    from liandan.training.run import save_final

    rd = RunDir(out_dir)
    save_final(rd, model, adapter=recipe.adapter is not None)
    n = sum(p.numel() for p in model.parameters())
    k = sum(p.numel() for p in model.parameters() if p.requires_grad)
    rd.write_summary({"name": recipe.name, **summary, "weights": "final", "params": n, "trainable_params": k})
