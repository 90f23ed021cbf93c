"""Opening a language-model run for RL and writing the run directory an RL method produces.

The output is an ordinary run directory (DESIGN.md): ``recipe.yaml`` (the base run's recipe,
renamed; with an adapter, ``model.from_run`` names the base and ``adapter`` the method, exactly
as a ``liandan finetune`` run), ``data.json`` and the tokenizer (copied: the run loads without
its base), ``metrics.csv``, ``checkpoints/final.safetensors`` and ``summary.json``, so
:func:`liandan.load_run`, ``liandan generate`` and ``liandan evaluate`` read it like any run.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from torch import nn

from liandan.errors import LiandanError

REWARD_MODEL_JSON = "reward_model.json"


def check_lm_run(run_dir: str | Path, verb: str) -> Path:
    """``run_dir`` as a Path once it is known to be a finished language-model run (cheap checks
    first: data.json is read before any model is built)."""
    from liandan.training.rundir import read_json

    path = Path(run_dir)
    if (path / REWARD_MODEL_JSON).is_file():
        raise LiandanError(f"{path} is a reward model, not a language-model run; {verb} needs an lm run")
    if not (path / "recipe.yaml").is_file() or not (path / "data.json").is_file():
        raise LiandanError(f"{path} is not a run directory (no recipe.yaml / data.json)")
    info = read_json(path / "data.json")
    if info.get("task") != "lm" or not info.get("tokenizer"):
        raise LiandanError(f"{verb} needs a language-model run (task lm); {path} is a {info.get('task')!r} run")
    return path


def open_policy(base: Path, adapter: str | dict | None, name_suffix: str) -> tuple[nn.Module, Any, Any, Any]:
    """(model, recipe, run, tokenizer) to fine-tune from ``base``: its trained weights, every
    weight trainable; or frozen under a new ``adapter``; or, when the base was itself fine-tuned
    through an adapter, that adapter (only) trainable."""
    from liandan.data.tokenize import load_tokenizer
    from liandan.recipe import load_dict, load_recipe
    from liandan.training.run import build_recipe_model, load_run

    run = load_run(base)
    if adapter is not None and run.recipe.adapter is not None:
        raise LiandanError(f"adapter: {base} already trains through a {run.recipe.adapter.name!r} adapter; "
                           "RL fine-tunes that adapter (leave adapter out)")
    raw = load_dict(base)
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
    return model.eval(), recipe, run, load_tokenizer(base / run.info.tokenizer)


def start_run_dir(base: Path, recipe, header: str, out: str | Path | None) -> Path:
    """A new run directory with the recipe, the base's data facts and tokenizer, status running."""
    from liandan.training.rundir import new_run_dir, read_json, write_json

    out_dir = new_run_dir(recipe.name, out)
    (out_dir / "recipe.yaml").write_text(recipe.to_yaml(header))
    info = read_json(base / "data.json")
    write_json(out_dir / "data.json", info)
    if info.get("tokenizer"):
        shutil.copy(base / info["tokenizer"], out_dir / info["tokenizer"])
    write_json(out_dir / "summary.json", {"name": recipe.name, "status": "running"})
    return out_dir


def finish_run_dir(out_dir: Path, model: nn.Module, recipe, summary: dict[str, Any]) -> None:
    """Weights (and the adapter's tensors alone, as a fine-tune writes them) and summary.json."""
    from liandan.training import checkpoint as ck
    from liandan.training.rundir import write_json

    ck.save_weights(model, out_dir / "checkpoints" / "final.safetensors")
    if recipe.adapter is not None:
        from liandan.adapters import adapter_state_dict

        ck.save_weights(adapter_state_dict(model), out_dir / "adapter.safetensors")
    n = sum(p.numel() for p in model.parameters())
    k = sum(p.numel() for p in model.parameters() if p.requires_grad)
    write_json(out_dir / "summary.json", {"name": recipe.name, **summary, "weights": "final", "params": n,
                                          "trainable_params": k})
