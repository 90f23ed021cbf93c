"""``model.output``: an activation on the model's output, seen by every consumer, absent from the weights."""

from __future__ import annotations

import pytest
import torch

import liandan
from liandan.training.run import load_run

FAST = {"train.epochs": 1, "doctor.enabled": False, "train.tensorboard": False, "report": False}


@pytest.mark.parametrize("kind", ["softmax", "sigmoid", "relu", "tanh"])
def test_output_activation_applies_everywhere_and_keeps_the_state_dict(tmp_path, kind) -> None:
    plain = liandan.train("spirals-mlp", overrides=FAST, out=tmp_path / "plain", quiet=True)
    run = liandan.train("spirals-mlp", overrides={**FAST, "model.output": kind}, out=tmp_path / kind, quiet=True)
    assert list(run.model.state_dict()) == list(plain.model.state_dict())  # the same weights, the same names
    x = run.data.test.x[:64]
    run.model.eval()
    out = run.model(x)
    act = {"softmax": lambda t: torch.softmax(t, -1), "sigmoid": torch.sigmoid, "relu": torch.relu,
           "tanh": torch.tanh}[kind]
    with torch.no_grad():
        hooks = run.model._forward_hooks
        saved = dict(hooks)
        hooks.clear()  # the bare network's output
        raw = run.model(x)
        hooks.update(saved)
    assert torch.allclose(out, act(raw))
    reloaded = load_run(run.dir)  # the recipe rebuilds the activation around the saved weights
    reloaded.model.eval()
    assert torch.equal(reloaded.model(x), out)
    # the final evaluation saw the activation too: softmax'd scores give a different test loss
    assert run.summary["final"]["test"]["loss"] != plain.summary["final"]["test"]["loss"]


def test_an_unknown_output_activation_is_one_line(cli) -> None:
    code, _, err = cli("train", "spirals-mlp", "--set", "model.output=gelu")
    assert code == 2 and "model.output" in err and "Traceback" not in err
