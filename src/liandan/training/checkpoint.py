"""Crash-safe checkpoints.

A step checkpoint is a directory ``checkpoints/step-00000123/`` holding ``model.safetensors``
and ``state.pt`` (optimizer, schedule, scaler, counters, every RNG state). It is written under a
temporary name, each file fsync'ed, then renamed into place in one atomic ``rename``: a process
killed at any instant leaves either the previous complete checkpoints or the new one, never a
half-written newest checkpoint. State files contain only tensors and plain containers, so they
load with ``torch.load(weights_only=True)`` (no unpickling of arbitrary objects).

Writes happen on a background thread (:class:`CheckpointWriter`): the training thread only takes
a CPU snapshot of the weights and state (a copy, so the next steps cannot change what is
written) and goes on training while the files are serialised and fsync'ed, as PyTorch's
``torch.distributed.checkpoint.async_save`` does. ``last.safetensors`` and ``best.safetensors``
are hard links to the checkpoint's weights file: no second copy to write and fsync.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from liandan.weights import (  # noqa: F401  (re-exported: the trainer's weight files are these)
    atomic_write_bytes,
    atomic_write_text,
    fsync_dir,
    link_or_copy,
    load_weights,
    save_weights,
    state_dict_cpu,
)

STEP_PREFIX = "step-"


def snapshot(obj: Any) -> Any:
    """A CPU copy of every tensor in a nested state (optimizer moments are updated in place)."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(snapshot(v) for v in obj)
    return obj


class CheckpointWriter:
    """Runs checkpoint writes one at a time on a background thread.

    ``submit`` first waits for the previous write, so checkpoints land in order; ``wait`` joins
    the pending write and re-raises its error in the training thread (a full disk fails the run
    loudly, not silently).
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, fn: Callable[[], Any]) -> None:
        self.wait()

        def run() -> None:
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 (handed to the training thread)
                self._error = e

        self._thread = threading.Thread(target=run, name="liandan-checkpoint")
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err


# --- RNG state (python, numpy, torch CPU and CUDA) as plain tensors and ints ------------------


def rng_state() -> dict[str, Any]:
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": {"version": version, "mt": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["mt"].tolist()), p["gauss"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- step checkpoints -----------------------------------------------------------------------


def save_checkpoint(ckpt_dir: Path, step: int, weights: dict[str, torch.Tensor], state: dict[str, Any], keep: int,
                    links: tuple[Path, ...] = ()) -> Path:
    """Atomically write checkpoint ``step`` (``weights``: a CPU state dict), point each of
    ``links`` (e.g. ``last.safetensors``) at its weights file, and prune older ones down to ``keep``."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"{STEP_PREFIX}{step:08d}"
    tmp = ckpt_dir / f".tmp-{STEP_PREFIX}{step:08d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(weights, str(tmp / "model.safetensors"))
    torch.save(state, tmp / "state.pt")
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(tmp)
    trash = None
    if final.exists():  # same step written again (epoch end right after a step checkpoint):
        # move the old one aside atomically first; deleting it in place could be interrupted and
        # leave a half-deleted *newest* checkpoint behind.
        trash = ckpt_dir / f".old-{final.name}-{os.getpid()}"
        os.rename(final, trash)
    os.rename(tmp, final)
    fsync_dir(ckpt_dir)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
    for link in links:
        link_or_copy(final / "model.safetensors", link)
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        doomed = ckpt_dir / f".old-{old.name}-{os.getpid()}"
        os.rename(old, doomed)  # out of the listing at once; leftovers are cleaned on resume
        shutil.rmtree(doomed, ignore_errors=True)
    return final


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete step checkpoints, oldest first (temp directories are ignored)."""
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX))


def clean_temp(ckpt_dir: Path) -> None:
    """Remove leftovers of checkpoint writes that a killed process did not finish."""
    if ckpt_dir.is_dir():
        for p in ckpt_dir.iterdir():
            if p.name.startswith("."):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def load_checkpoint(path: Path, model: nn.Module) -> dict[str, Any]:
    load_weights(model, path / "model.safetensors")
    return torch.load(path / "state.pt", weights_only=True, map_location="cpu")


def newest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest checkpoint whose files load; a damaged one is skipped, not trusted."""
    for p in reversed(list_checkpoints(ckpt_dir)):
        try:
            torch.load(p / "state.pt", weights_only=True, map_location="cpu")
            load_file(str(p / "model.safetensors"))
            return p
        except Exception:  # noqa: BLE001 (any damage means: try the previous one)
            continue
    return None
