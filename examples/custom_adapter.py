"""A new PEFT method in one file: IA³ (Liu et al. 2022, "Few-Shot Parameter-Efficient
Fine-Tuning is Better and Cheaper than In-Context Learning"), registered with one call.

IA³ learns one vector ``l`` per target layer and rescales the layer's output, ``h = l ⊙ (W x + b)``
(peft's ``IA3Config`` for non-feed-forward targets). ``l`` starts at ones, so training starts from
the base model exactly, and it merges into the layer: ``W' = diag(l) W``, ``b' = l ⊙ b``.

    python examples/custom_adapter.py

Fine-tunes a digits MLP run from a frozen base with ``adapter: {name: ia3}`` and prints one JSON
line: trainable parameters, test accuracy before and after, and the merged model's largest
difference from the adapted one.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from liandan.adapters.base import dims
from liandan.adapters.inject import Adapter
from liandan.registry import register_adapter


class IA3Linear(nn.Module):
    """``l ⊙ base(x)``: one learned scale per output unit of a frozen ``nn.Linear``."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        _, out_f = dims(base)
        self.base = base
        self.ia3_l = nn.Parameter(torch.ones(out_f, dtype=base.weight.dtype))  # (out,)
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # (..., out)
        return y if self.merged else y * self.ia3_l

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the scales into the base layer (then ``merge_adapter`` puts the layer back)."""
        if not self.merged:
            self.base.weight.mul_(self.ia3_l[:, None])  # (out, in): row i scaled by l_i
            if self.base.bias is not None:
                self.base.bias.mul_(self.ia3_l)
            self.merged = True


@register_adapter("ia3")
def ia3(targets: list[str] | None = None) -> Adapter:
    """IA³: learned output scales on each target layer (Liu et al. 2022); `out` numbers per layer.

    Args:
        targets: names of the layers to adapt (a module named t or ending in .t); None: every Linear
            but the output head
    """
    return Adapter("ia3", targets, lambda name, layer: IA3Linear(layer))


def main(out: Path, seed: int = 0) -> dict:
    import liandan
    from liandan.adapters import merge_adapter, trainable_parameters

    common = {"seed": seed, "data": {"source": "digits"}, "doctor": {"enabled": False}, "report": False}
    train = {"tensorboard": False, "threads": 1}
    base = liandan.train({**common, "name": "digits-base", "model": {"name": "mlp", "hidden": [64]},
                          "train": {**train, "epochs": 2}}, out=out / "base", quiet=True)
    tuned = liandan.train({**common, "name": "digits-ia3",  # the base frozen, one scale per hidden unit trained
                           "model": {"name": "mlp", "hidden": [64], "from_run": str(base.dir)},
                           "adapter": {"name": "ia3"}, "optim": {"name": "adamw", "lr": 0.05},
                           "train": {**train, "epochs": 10}}, out=out / "ia3", quiet=True)
    trainable, total = trainable_parameters(tuned.model)
    x = torch.randn(16, 64)
    with torch.no_grad():
        adapted = tuned.model.eval()(x)
        merged = merge_adapter(tuned.model)(x)
    return {"trainable": trainable, "total": total, "base_test_accuracy": base.summary["final"]["test"]["accuracy"],
            "ia3_test_accuracy": tuned.summary["final"]["test"]["accuracy"],
            "merge_max_abs_diff": float((adapted - merged).abs().max())}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp))))
