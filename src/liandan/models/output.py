"""``model.output``: an activation applied to whatever the model returns (Keras's
``Dense(..., activation=...)`` on the last layer).

Every liandan loss expects raw scores — logits for cross-entropy and BCE-with-logits, unbounded
values for MSE/L1 — so the default is ``logits`` (nothing applied). The others exist because
models in the wild end in one: ``softmax`` over the last axis (a probability vector),
``sigmoid`` (0, 1), ``relu`` [0, ∞), ``tanh`` (-1, 1). Under a loss that does not expect them they
are the classic wiring faults the doctor names (``loss_output_mismatch``: softmax twice, a softmax
over one output that is constantly 1, a bounded output that cannot reach the targets), and its fix
is the patch ``model.output: logits``.

The activation is a forward hook on the model itself, not a wrapper module: the state dict keeps
its names (checkpoints, ``from_run``, export and adapters see the same model), and every consumer
— the training step, validation, the final evaluation, the returned model — sees the same output.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

OUTPUTS = {
    "softmax": lambda t: torch.softmax(t, dim=-1),  # (B, K) or (B, T, V): over the last axis
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "tanh": torch.tanh,
}


def apply_output(model: nn.Module, kind: str) -> nn.Module:
    """``model`` with ``kind`` applied to its tensor output (``logits``: unchanged)."""
    if kind == "logits":
        return model
    act = OUTPUTS[kind]

    def hook(_m: nn.Module, _inp: tuple, out: Any) -> Any:
        return act(out) if torch.is_tensor(out) else out

    # prepend: the activation runs before any other forward hook (the doctor's probes must see
    # what the loss sees)
    model.register_forward_hook(hook, prepend=True)
    model.liandan_output = kind  # what model facts and reports cite
    return model
