"""A run directory loaded back: :class:`Run`, :func:`load_run`, and :func:`prepare` (data, model,
loss and device for a recipe, checked with one forward pass).

This is the layer the pillars read runs through (evaluate, report, doctor, generate, sample,
predict). The directory's files and formats are :mod:`liandan.runs`'s (:class:`~liandan.runs.RunDir`);
this module adds what needs torch: the model, rebuilt and loaded from its weights, and the data,
rebuilt from the seeded recipe, each on demand.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from liandan.data.pipeline import DataInfo, DataModule, build_data
from liandan.errors import LiandanError
from liandan.paths import check_path
from liandan.recipe import Recipe
from liandan.registry import RUN_FORMATS
from liandan.runs import ADAPTER, DATA, PEFT_ADAPTER, RunDir
from liandan.training import checkpoint as ck
from liandan.training.setup import build_loss, build_model, pick_device, set_memory_format
from liandan.training.tasks import Task, build_task, task_class


@dataclass
class Run:
    """A run directory with its recipe, summary and data facts; its trained model (``model``) and
    its data (:meth:`load_data`) are built on first use and kept."""

    dir: Path
    recipe: Recipe
    summary: dict[str, Any]
    info: DataInfo
    model: nn.Module | None = field(default=None, repr=False, compare=False)  # a property: see below
    data: DataModule | None = field(default=None, repr=False)
    weights: str | None = field(default=None, repr=False)  # which checkpoints/<weights> ``model`` loads

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")

    @property
    def files(self) -> RunDir:
        """The directory's files (:class:`liandan.runs.RunDir`)."""
        return RunDir(self.dir)

    @classmethod
    def open(cls, run_dir: str | Path, weights: str | None = None) -> Run:
        """The run in ``run_dir`` with nothing built yet: recipe, summary and data facts are read,
        the model loads when ``model`` is first used. Another kind of run directory (a compressed
        run, :data:`~liandan.registry.RUN_FORMATS`) is rebuilt by its own loader."""
        rd = RunDir(run_dir)
        check_path(rd.path, "run directory")
        if weights is None:
            for fmt in RUN_FORMATS.entries():
                if rd.has(fmt.extra["marker"]):
                    return fmt.fn(rd.path)
        rd.require()
        recipe = rd.recipe()
        summary = rd.summary()
        return cls(rd.path, recipe, summary, DataInfo.from_dict(rd.data_info()), weights=weights)

    def load_model(self) -> nn.Module:
        """The trained model in eval mode: rebuilt from the recipe (seeded) and loaded from the
        weights ``summary.json`` names (or ``weights``), in the memory format it trained with."""
        seed_everything(self.recipe.seed)
        model = build_recipe_model(self.recipe, self.info, base_weights=False)  # its checkpoint has every weight
        ck.load_weights(model, self.files.weights(self.weights, self.summary))
        # evaluate with the memory format it trained with: the same kernels, the same last bits
        return set_memory_format(model, self.recipe.train.channels_last, self.info, torch.device("cpu")).eval()

    def load_data(self) -> DataModule:
        """The run's data, rebuilt once from the seeded recipe (the same splits it trained on) and
        kept; refused when the source no longer gives the statistics the run was trained with."""
        if self.data is None:
            data = build_data(self.recipe.data, self.recipe.seed, self.recipe.task)
            if data.info.x_mean != self.info.x_mean:
                raise LiandanError(f"{self.dir}: the data no longer matches the run (normalisation statistics differ)")
            self.data = data
        return self.data


def _model(run: Run) -> nn.Module:
    if run.__dict__.get("_model") is None:
        run.__dict__["_model"] = run.load_model()
    return run.__dict__["_model"]


def _set_model(run: Run, model: nn.Module | None) -> None:
    run.__dict__["_model"] = model


# ``model`` stays a dataclass field (``Run(dir, recipe, summary, info, model)``, ``dataclasses.replace``)
# and loads on first use when none was given.
Run.model = property(_model, _set_model, doc="The trained model (loaded on first use).")  # type: ignore[assignment]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare(recipe: Recipe, model: nn.Module | None = None) -> tuple[DataModule, nn.Module, str, Any, torch.device]:
    """Data, model, loss and device for ``recipe``, checked with one forward pass before training.
    ``model``: a module already built (a user's), used as it is instead of the recipe's model."""
    seed_everything(recipe.seed)
    data = build_data(recipe.data, recipe.seed, recipe.task)
    seed_everything(recipe.seed)  # model init must not depend on how much RNG the data used
    if recipe.model.from_run and model is None:
        data.info = fine_tune_info(data.info, Path(recipe.model.from_run), getattr(data.source, "tokenizer", None))
    model = build_recipe_model(recipe, data.info) if model is None else model
    loss_name, loss_fn = build_loss(recipe.loss, data.info.task)
    device = pick_device(recipe.train.device)
    model.to(device)
    _dry_run(model, build_task(data.info, loss_fn, recipe), data, device)
    return data, model, loss_name, loss_fn, device


def _dry_run(model: nn.Module, task: Task, data: DataModule, device: torch.device) -> None:
    """Fail before any training when the model cannot take the data or the loss the output."""
    b = data.eval_batches("train")
    xb, yb = next(iter(b.epoch(0)))
    xb, yb = xb[:2].to(device), yb[:2].to(device)
    was = model.training
    model.eval()  # eval mode: no batch-norm statistics move, no dropout RNG is drawn
    try:
        with torch.no_grad():
            _check_forward(model, task, data, xb, yb)
    finally:
        model.train(was)


def _check_forward(model: nn.Module, task: Task, data: DataModule, xb: torch.Tensor, yb: torch.Tensor) -> None:
    first = lambda e: str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__  # noqa: E731
    if task.loss_fn is None:  # the task calls the model itself (lm, gan, diffusion, ...)
        try:
            task.forward(model, xb, yb)
        except (RuntimeError, ValueError, IndexError, TypeError) as e:
            raise LiandanError(f"task {data.info.task!r} cannot run model on a batch from "
                               f"{data.info.source!r}: {first(e)}") from None
        return
    try:
        out = model(xb)
    except (RuntimeError, ValueError, IndexError) as e:
        raise LiandanError(f"model cannot take inputs of shape {tuple(xb.shape[1:])} from "
                           f"{data.info.source!r}: {first(e)}") from None
    if task.is_classification and out.dim() == 2 and out.shape[1] < data.info.num_classes:
        raise LiandanError(f"model outputs {out.shape[1]} values but the data has {data.info.num_classes} classes")
    try:
        task.loss_fn(out, yb)
    except (RuntimeError, ValueError, IndexError) as e:
        raise LiandanError(f"loss cannot compare the model output {tuple(out.shape)} with targets "
                           f"{tuple(yb.shape)}: {first(e)}") from None


def load_run(run_dir: str | Path, weights: str | None = None, model: nn.Module | None = None) -> Run:
    """Load a finished run: recipe, summary, data facts and the model with its trained weights.

    ``model``: a module of the run's architecture (a user's module that the recipe cannot rebuild)
    that the weights load into; the recipe's model section is then neither imported nor built.
    Under the agents' roots (:mod:`liandan.paths`) the directory and every file read from it are
    checked when opened; the weights named by ``summary.json`` stay inside the run directory always."""
    if model is not None:
        from liandan.recipe import validate

        rd = RunDir(run_dir)
        check_path(rd.path, "run directory")
        rd.require()
        recipe = validate(rd.raw_recipe(), check_registries=False)
        run = Run(rd.path, recipe, rd.summary(), DataInfo.from_dict(rd.data_info()), weights=weights)
        ck.load_weights(model, rd.weights(weights, run.summary))
        run.model = model.eval()
        return run
    run = Run.open(run_dir, weights)
    run.model  # noqa: B018 (loaded now: a missing or damaged checkpoint is an error here)
    return run


def weights_path(run_dir: Path, weights: str | None = None, summary: dict[str, Any] | None = None) -> Path:
    """The run's ``checkpoints/<weights>.safetensors`` (default: the summary's choice, else ``last``)."""
    return RunDir(run_dir).weights(weights, summary)


def checkpoint_file(run_dir: Path, name: Any) -> Path:
    """``run_dir/checkpoints/<name>.safetensors`` for a plain weights ``name`` (see :class:`liandan.runs.RunDir`)."""
    return RunDir(run_dir).weights_file(name)


def save_final(rd: RunDir, model: nn.Module, *, adapter: bool = False) -> None:
    """A finished run's weights: ``checkpoints/final.safetensors`` and, for a run trained through
    an adapter, ``adapter.safetensors`` (the adapter's tensors alone: what a fine-tune adds)."""
    ck.save_weights(model, rd.checkpoints / "final.safetensors")
    if adapter:
        from liandan.adapters import adapter_state_dict, save_peft_adapter

        ck.save_weights(adapter_state_dict(model), rd / ADAPTER)
        try:  # RUN/adapter/: the same adapter in peft's format (PeftModel.from_pretrained loads it)
            save_peft_adapter(model, rd / PEFT_ADAPTER)
        except LiandanError:
            pass  # a method peft lacks (DyLoRA, QA-LoRA): adapter.safetensors alone


def build_recipe_model(recipe: Recipe, info: DataInfo, *, base_weights: bool = True) -> nn.Module:
    """The recipe's model: built and initialised; with ``model.from_run`` the trained weights of that
    run (``base_weights``); with ``adapter`` the base frozen and the adapter in place."""
    base = check_path(recipe.model.from_run, "model.from_run") if recipe.model.from_run and base_weights else None
    model = build_model(recipe.model, info)
    if recipe.model.output != "logits":
        from liandan.models.output import apply_output

        model = apply_output(model, recipe.model.output)
    if recipe.model.weights and base_weights:  # transfer learning from a state dict (torchvision/timm names too)
        from liandan.models.pretrained import load_pretrained

        load_pretrained(model, check_path(recipe.model.weights, "model.weights"), recipe.model.name,
                        num_classes=info.num_classes if task_class(info.task).is_classification else None)
    if recipe.model.freeze != "none":
        from liandan.models.pretrained import freeze

        freeze(model, recipe.model.freeze)
    if base is not None:
        try:
            ck.load_weights(model, weights_path(base))
        except (RuntimeError, KeyError) as e:
            raise LiandanError(f"model.from_run: {base}'s weights do not fit this model (give the base run's "
                               f"model options): {str(e).strip().splitlines()[0]}") from None
    if recipe.adapter is not None and recipe.adapter.from_:  # a peft-trained adapter to start from
        from liandan.adapters import load_peft_adapter

        model = load_peft_adapter(model, check_path(recipe.adapter.from_, "adapter.from"), method=recipe.adapter.name)
    elif recipe.adapter is not None:
        from liandan.registry import ADAPTERS

        entry = ADAPTERS.get(recipe.adapter.name)
        model = entry.fn(**entry.validate(recipe.adapter.options, where="adapter")).apply(model)
    return model


def fine_tune_info(new: DataInfo, base_dir: Path, tokenizer: Any = None) -> DataInfo:
    """The data facts of a fine-tune: the new data's, with the base model's context, once the new
    data is checked to fit the base run (the same tokenizer — token for token, not only its size —,
    classes and input shape; context ≤ the base's). Saved as the run's data.json, so the
    fine-tuned run loads without its base."""
    check_path(base_dir, "model.from_run")
    rd = RunDir(base_dir)
    if not rd.has(DATA):
        raise LiandanError(f"model.from_run: {base_dir} is not a run directory (no {DATA})")
    base = DataInfo.from_dict(rd.data_info())
    where = f"model.from_run ({base_dir})"
    if new.vocab_size != base.vocab_size:
        raise LiandanError(f"{where}: the base run has a vocabulary of {base.vocab_size} tokens, this data "
                           f"{new.vocab_size}; fine-tune on data with the same tokenizer")
    if tokenizer is not None and base.tokenizer:
        _check_same_tokenizer(tokenizer, rd.tokenizer_file(rd.data_info()), where)
    if new.max_len > base.max_len:
        raise LiandanError(f"{where}: this data needs a context of {new.max_len} tokens, the base model has "
                           f"{base.max_len}")
    if not new.vocab_size and tuple(new.input_shape) != tuple(base.input_shape):
        raise LiandanError(f"{where}: inputs of shape {tuple(new.input_shape)} but the base model takes "
                           f"{tuple(base.input_shape)}")
    if task_class(new.task).is_classification and new.num_classes != base.num_classes:
        raise LiandanError(f"{where}: {new.num_classes} classes but the base model has {base.num_classes}")
    return dataclasses.replace(new, max_len=base.max_len)


def _check_same_tokenizer(new: Any, base_file: Path, where: str) -> None:
    """Refuse data tokenized differently from the base run: its embeddings mean other tokens."""
    from liandan.data.tokenize import load_tokenizer

    def vocab(tok: Any) -> dict[str, int]:
        return dict(tok.index) if hasattr(tok, "index") else dict(tok.tok.get_vocab())

    base, mine = vocab(load_tokenizer(base_file)), vocab(new)
    if base == mine:
        return
    show = lambda ts: ", ".join(repr(t) for t in sorted(ts)[:8]) + (", …" if len(ts) > 8 else "")  # noqa: E731
    only_base, only_new = set(base) - set(mine), set(mine) - set(base)
    moved = {t for t in set(base) & set(mine) if base[t] != mine[t]}
    parts = [f"only in the base: {show(only_base)}" if only_base else "",
             f"only in this data: {show(only_new)}" if only_new else "",
             f"at other ids: {show(moved)}" if moved else ""]
    raise LiandanError(f"{where}: this data's tokenizer differs from the base run's ("
                       + "; ".join(p for p in parts if p) + "); fine-tune on data the base's tokenizer covers")
