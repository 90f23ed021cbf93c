"""The trainer's default callbacks (built from the recipe) and the callbacks a recipe names.

Importing this module registers every built-in callback (it is the ``liandan.callbacks``
entry point), so ``train.callbacks: [{name: model_checkpoint, every: 100}]`` resolves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from liandan.registry import CALLBACKS
from liandan.training.callbacks.base import Callback
from liandan.training.callbacks.csv_logger import CSVLogger
from liandan.training.callbacks.early_stopping import EarlyStopping
from liandan.training.callbacks.model_checkpoint import ModelCheckpoint
from liandan.training.callbacks.progress_bar import ProgressBar
from liandan.training.callbacks.signals import SignalHandler
from liandan.training.callbacks.tensorboard import TensorBoardLogger
from liandan.training.callbacks.unfreeze import Unfreeze

if TYPE_CHECKING:
    from liandan.recipe import Recipe
    from liandan.training.loop import Trainer


def default_callbacks(trainer: Trainer, user: list[Callback]) -> list[Callback]:
    """Loggers, best tracking and the progress bar first, then ``user``, then checkpoints and
    signals last (as in Lightning): a checkpoint sees what every other callback did in that step
    or epoch, e.g. a stop one of them requested. A built-in whose class (or a subclass) is in
    ``user`` is left out: the user's replaces it."""
    tc = trainer.cfg
    es = tc.early_stopping
    first: list[Callback] = [CSVLogger()]
    if tc.tensorboard:
        first.append(TensorBoardLogger())
    first += [EarlyStopping(patience=es.patience if es else None, min_delta=es.min_delta if es else 0.0),
              ProgressBar()]
    if trainer.recipe.model.unfreeze_at_epoch:  # gradual unfreezing after a frozen-backbone start
        first.append(Unfreeze(trainer.recipe.model.unfreeze_at_epoch))
    last: list[Callback] = [ModelCheckpoint(tc.checkpoint_every, tc.keep_checkpoints)] if trainer.checkpoints else []
    last.append(SignalHandler())

    def wanted(cb: Callback) -> bool:
        return not any(isinstance(u, type(cb)) for u in user)

    return [*filter(wanted, first), *user, *filter(wanted, last)]


def recipe_callbacks(recipe: Recipe) -> list[Callback]:
    """The callbacks ``train.callbacks`` names, built with their options (checked by the recipe);
    a builder with a ``recipe`` parameter (the doctor's) is handed the run's recipe."""
    out = []
    for i, c in enumerate(recipe.train.callbacks):
        out.append(build_callback(c.name, c.options, recipe, where=f"train.callbacks[{i}]"))
    return out


def build_callback(name: str, options: dict, recipe: Recipe, where: str = "train.callbacks") -> Callback:
    """Registered callback ``name`` built with ``options`` (and the run's ``recipe`` when it takes one)."""
    entry = CALLBACKS.get(name)
    opts = entry.validate(options, where=where)
    if "recipe" in entry.options():
        opts["recipe"] = recipe
    return entry.fn(**opts)
