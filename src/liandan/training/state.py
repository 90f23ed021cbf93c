"""What exact resume saves and restores: the counters, and the trainer's whole state around them.

A checkpoint's ``state.pt`` holds the counters (:class:`TrainState`), the optimizer, schedule and
scaler states, the RNG states, the running train tallies and log-interval loss, the task's state
(a GAN's second optimizer) and, when any callback has state, the callbacks' states under their
keys. Restoring all of it makes a resumed run bit-identical to one never stopped (CPU, fp32:
``tests/training/test_kill_resume.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from liandan.training import checkpoint as ck
from liandan.training.callbacks.base import keyed

if TYPE_CHECKING:
    from liandan.training.loop import Trainer


@dataclass
class TrainState:
    """Counters restored on resume (everything else is derived from the recipe and the seed)."""

    epoch: int = 0
    step: int = 0  # optimizer steps taken
    batch: int = 0  # next batch index within ``epoch``
    # The best epoch so far (EarlyStopping tracks it): here rather than in the callback's state,
    # because summary.json reports it and checkpoints of earlier versions resume unchanged.
    best_value: float | None = None
    best_step: int = -1
    best_epoch: int = -1
    stale_epochs: int = 0  # early-stopping counter
    bad_steps: int = 0  # consecutive non-finite steps
    total_bad_steps: int = 0
    csv_rows: int = 0  # metrics.csv rows written (CSVLogger): a resumed run cuts the file back to this
    wall_s: float = 0.0
    samples: int = 0


def checkpoint_state(trainer: Trainer) -> dict[str, Any]:
    """A CPU snapshot of everything exact resume needs besides the weights."""
    st = trainer.state
    st.wall_s = trainer.clock()
    flush = getattr(trainer.train_acc, "flush", None)
    if flush is not None:  # a tally that batches its updates counts the pending ones first
        flush()
    acc = {k: v for k, v in vars(trainer.train_acc).items() if torch.is_tensor(v) or k == "n"}
    state = {
        "counters": asdict(st),
        "optimizer": trainer.optimizer.state_dict(),
        "schedule": trainer.schedule.state_dict(),
        "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
        "rng": ck.rng_state(),
        "train_acc": acc,
        "log": {"loss": trainer._log_loss, "n": trainer._log_n},
        "task": trainer.task.state_dict(),
    }
    saved = {k: s for k, cb in keyed(trainer.callbacks).items() if (s := cb.state_dict())}
    if saved:  # absent otherwise: a run without stateful callbacks writes what it always did
        state["callbacks"] = saved
    for fn in trainer.hooks["on_save_checkpoint"]:
        fn(trainer, state)
    return ck.snapshot(state)


def restore(trainer: Trainer, path: Path) -> None:
    """Load checkpoint ``path`` into ``trainer`` (weights, state, callbacks' states, RNG last)."""
    st = ck.load_checkpoint(path, trainer.model)
    trainer.optimizer.load_state_dict(st["optimizer"])
    trainer.schedule.load_state_dict(st["schedule"])
    if trainer.scaler is not None and st.get("scaler"):
        trainer.scaler.load_state_dict(st["scaler"])
    trainer.state = TrainState(**st["counters"])
    acc = st.get("train_acc")
    if acc:
        for k, v in acc.items():
            setattr(trainer.train_acc, k, v.to(trainer.device) if torch.is_tensor(v) else v)
    if "log" in st:
        trainer._log_loss, trainer._log_n = st["log"]["loss"].to(trainer.device), st["log"]["n"]
    trainer.task.load_state_dict(st.get("task") or {})
    saved = st.get("callbacks") or {}
    for key, cb in keyed(trainer.callbacks).items():
        if key in saved:
            cb.load_state_dict(saved[key])
    ck.set_rng_state(st["rng"])
