"""Gradual unfreezing (Howard & Ruder 2018, ULMFiT): the head trains alone on a frozen backbone
first, then every parameter trains from epoch N on, once the new head no longer sends large,
random gradients into pre-trained features.

The optimizer was built over the frozen parameters too (they had no gradient, so it skipped
them), so unfreezing needs no new parameter group and a resumed run rebuilds the same optimizer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from liandan.registry import register_callback
from liandan.training.callbacks.base import Callback

if TYPE_CHECKING:
    from liandan.training.loop import Trainer


@register_callback("unfreeze")
class Unfreeze(Callback):
    """Make every parameter trainable from epoch ``at_epoch`` on (the recipe's model.unfreeze_at_epoch).

    Args:
        at_epoch: the first epoch (1-based) in which every parameter trains
    """

    def __init__(self, at_epoch: int = 1) -> None:
        self.at_epoch = at_epoch

    def _apply(self, trainer: Trainer) -> None:
        if trainer.state.epoch + 1 >= self.at_epoch:  # state.epoch: the 0-based epoch about to run
            for p in trainer.model.parameters():
                p.requires_grad_(True)
            trainer.params = [p for p in trainer.model.parameters() if p.requires_grad]  # clipping and the norm

    def on_fit_start(self, trainer: Trainer) -> None:  # a resumed run past the epoch trains everything again
        self._apply(trainer)

    def on_epoch_complete(self, trainer: Trainer) -> None:
        self._apply(trainer)
