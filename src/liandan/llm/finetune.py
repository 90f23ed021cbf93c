"""``liandan finetune``: train a recipe starting from a finished run, optionally through an adapter.

It is :func:`liandan.train` with ``model.from_run`` set (and ``adapter``): the run directory,
the doctor, checkpoints, resume and the report are the same as for any run.

:func:`merge` (and ``finetune(..., merge=DIR)``) writes the fine-tune with its adapter folded into
the weights as a plain Hugging Face ``save_pretrained`` directory, tokenizer files beside it
(:func:`liandan.adapters.save_merged`): ``AutoModelForCausalLM.from_pretrained(DIR)`` (or the
``…ForSequenceClassification`` class of a classifier) gives the adapted model's logits. It takes a
finished run, or a Hugging Face base directory with a peft adapter directory (peft's
``merge_and_unload`` without peft).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from liandan.errors import LiandanError


def finetune(base_run: str | Path, recipe: str | Path | dict | None = None, *, adapter: str | dict | None = None,
             overrides: list[str] | None = None, out: str | Path | None = None, quiet: bool = False,
             merge: str | Path | None = None) -> Any:
    """Fine-tune ``base_run`` on ``recipe`` (a preset, file or dict; default: the base run's own
    recipe) with ``adapter`` (a method name such as ``"lora"``, or a section
    ``{"name": "lora", "r": 8}``; default: the recipe's, else every weight trains).
    ``overrides`` apply last. ``merge``: also write the merged model there (see :func:`merge`).
    Returns the finished :class:`~liandan.training.run.Run`."""
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
    run = train(raw, overrides=overrides, out=out, quiet=quiet)
    if merge is not None:
        _save_run_merged(run, merge)
    return run


def merge(source: str | Path, out: str | Path, *, adapter: str | Path | None = None,
          tokenizer: str | Path | None = None) -> Path:
    """Write ``source``'s adapter merged into its weights as a plain Hugging Face directory ``out``.

    ``source``: a finished run trained through an adapter (its trained model merges), or, with
    ``adapter`` (a peft adapter directory: ``adapter_config.json`` + ``adapter_model.safetensors``,
    from peft or from ``RUN/adapter/``), a Hugging Face base model directory (``config.json``; it
    loads with the class its config names). Tokenizer files come from ``tokenizer``, else the run's
    ``hf/`` or the base's directory. Prompt and prefix adapters add virtual tokens, not weights:
    refused. Returns ``out``."""
    from liandan.paths import check_path

    src = check_path(source, "merge source")
    if adapter is None:
        from liandan.training.run import load_run

        if not (src / "recipe.yaml").is_file():
            raise LiandanError(f"merge: {src} is not a run directory (no recipe.yaml); for a Hugging Face base "
                               "directory give the peft adapter directory too (adapter=...)")
        return _save_run_merged(load_run(src), out, tokenizer)
    from liandan.adapters import load_peft_adapter, save_merged

    model = _load_hf(src)
    load_peft_adapter(model, check_path(adapter, "adapter"))
    return save_merged(model, out, tokenizer_from=tokenizer)


def _save_run_merged(run: Any, out: str | Path, tokenizer: str | Path | None = None) -> Path:
    from liandan.adapters import save_merged
    from liandan.adapters.merge import tokenizer_files

    if run.recipe.adapter is None:
        raise LiandanError(f"merge: {run.dir} was not trained through an adapter: its weights are already "
                           "plain (RUN/hf/ for Hugging Face models)")
    own = run.dir / "hf"  # the tokenizer the run wrote for its Hugging Face model
    return save_merged(run.model, out, tokenizer_from=tokenizer or (own if tokenizer_files(own) else None))


def _load_hf(directory: Path) -> Any:
    """The Hugging Face model saved in ``directory``, as the class its ``config.json`` names."""
    if not (directory / "config.json").is_file():
        raise LiandanError(f"merge: {directory} is neither a run directory nor a Hugging Face model directory "
                           "(no config.json)")
    import transformers

    config = transformers.AutoConfig.from_pretrained(str(directory))
    name = next(iter(getattr(config, "architectures", None) or []), None)
    cls = getattr(transformers, name, None) if name else None
    if cls is None:
        raise LiandanError(f"merge: {directory}/config.json names no transformers class (architectures: "
                           f"{getattr(config, 'architectures', None)})")
    if not any(directory.glob("*.safetensors")):  # no pickles unless trusted: the weights must be safetensors
        raise LiandanError(f"merge: {directory} has no .safetensors weights (pickled .bin weights are not loaded)")
    return cls.from_pretrained(str(directory), use_safetensors=True).eval()
