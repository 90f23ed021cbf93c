"""Weight files and crash-safe writes: the core's one way to put tensors and text on disk.

Weights are safetensors (no code runs when they load, unlike a pickle). Every write goes to a
temporary name, is fsync'ed, then renamed into place, so a process killed at any instant leaves
the old file or the new one, never half of one. Checkpoints (:mod:`liandan.training.checkpoint`)
and :mod:`liandan.serialize` build on these.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from liandan.errors import LiandanError
from liandan.runs import atomic_write_bytes, atomic_write_text, fsync_dir  # noqa: F401  (one atomic writer)


def state_dict_cpu(model: nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared storage (tied weights): store contiguous clones.
    sd = model if isinstance(model, dict) else model.state_dict()
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}


def link_or_copy(src: Path, dst: Path) -> None:
    """Atomically make ``dst`` the same file as ``src`` (a hard link; a copy where links fail)."""
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    os.replace(tmp, dst)
    fsync_dir(dst.parent)


def save_weights(model: nn.Module | dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(state_dict_cpu(model), str(tmp))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def load_weights(model: nn.Module, path: Path, strict: bool = True) -> None:
    from liandan.paths import check_path, checked_file

    check_path(path, "weights")  # under the agents' roots: before anything about the file is told
    if not path.is_file():
        raise LiandanError(f"weights file not found: {path}")
    try:
        with checked_file(path, "weights") as name:  # the checked inode, even if swapped meanwhile
            sd = load_file(name)
    except LiandanError:
        raise
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise LiandanError(f"cannot read weights {path}: {e}") from None
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if strict and (missing or unexpected):
        raise LiandanError(f"weights {path} do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
