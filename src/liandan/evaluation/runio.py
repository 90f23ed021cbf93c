"""Loading a finished run with its data, and running its model over raw inputs.

Everything here takes *raw* inputs (the units a data source yields, e.g. pixels in [0, 1]) and
applies the run's own normalisation (``DataInfo.normalize_x``), so evaluation, OOD scoring and
prediction see exactly what training saw.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from liandan.data.pipeline import DataInfo, DataModule
from liandan.errors import LiandanError
from liandan.training.run import Run, load_run


def open_run(run_dir: str | Path) -> tuple[Run, DataModule]:
    """The trained run (model in eval mode) and its data rebuilt from the seeded recipe."""
    run = load_run(run_dir)
    return run, run.load_data()


def raw_split(
    data: DataModule, split: str, max_samples: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Un-normalised inputs and labels of ``split`` (a seeded subsample when ``max_samples`` is set)."""
    data.split(split)  # raises a LiandanError naming the available splits
    idx = np.asarray(data.indices[split])
    if max_samples is not None and len(idx) > max_samples:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(idx, max_samples, replace=False))
    src = data.source
    if src.x is not None:
        return src.x[torch.as_tensor(idx)], src.y[torch.as_tensor(idx)]
    ds = src.dataset  # file-backed: read the items without the pipeline's normalisation
    saved, ds.transform = getattr(ds, "transform", None), None
    try:
        xs = [ds[int(i)][0] for i in idx]
    finally:
        ds.transform = saved
    return torch.stack(xs), src.y[torch.as_tensor(idx)]


@torch.no_grad()
def logits_of(model: nn.Module, info: DataInfo, x_raw: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Model outputs for raw inputs, in batches, in eval mode (float32 on the CPU)."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    outs = [
        model(info.normalize_x(x_raw[i : i + batch_size]).to(device)).float().cpu()
        for i in range(0, len(x_raw), batch_size)
    ]
    model.train(was)
    return torch.cat(outs) if outs else torch.empty(0)


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last ``nn.Linear`` in registration order: the classifier head."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise LiandanError(
            f"{type(model).__name__} has no nn.Linear layer: penultimate features "
            "(Mahalanobis) need a linear classifier head"
        )
    return linears[-1]


@contextmanager
def capture_penultimate(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the input of the last Linear layer (the penultimate features) on every forward."""
    feats: list[torch.Tensor] = []

    def hook(_mod: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        feats.append(args[0].detach().flatten(1).double().cpu())

    handle = last_linear(model).register_forward_pre_hook(hook)
    try:
        yield feats
    finally:
        handle.remove()
