"""Transfer learning from a recipe: ``model.weights`` in torchvision's key names, a frozen
backbone that stays bit-for-bit the source, and gradual unfreezing (``unfreeze_at_epoch``)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import liandan
from tests.models.test_pretrained import random_state_dict

pytestmark = pytest.mark.slow  # two short resnet18 trainings


def recipe(weights, **model) -> dict:
    return {"name": "shapes-transfer", "seed": 0,
            "data": {"source": "shapes", "n": 200, "batch_size": 50},
            "model": {"name": "resnet18", "weights": str(weights), "small_input": False, **model},
            "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.0},
            "train": {"epochs": 2, "threads": 1, "tensorboard": False}, "doctor": {"enabled": False},
            "report": False}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    sd = random_state_dict("resnet18")  # torchvision's names and shapes, 1000 classes, random values
    path = tmp_path_factory.mktemp("w") / "resnet18_torchvision.safetensors"
    save_file(sd, str(path))
    return path, sd


def test_frozen_backbone_trains_the_head_only(weights, tmp_path) -> None:
    path, sd = weights
    run = liandan.train(recipe(path, freeze="backbone"), out=tmp_path / "r", quiet=True)
    assert run.status == "completed"
    head = 512 * 10 + 10  # shapes has 10 classes: a new fc replaces torchvision's 1000-way head
    assert run.summary["trainable_params"] == head
    model = run.model.state_dict()
    assert torch.equal(model["conv1.weight"].contiguous(), sd["conv1.weight"])  # the backbone is the source's
    assert torch.equal(model["layer4.1.conv2.weight"].contiguous(), sd["layer4.1.conv2.weight"])
    assert torch.equal(model["layer1.0.bn1.running_mean"], sd["layer1.0.bn1.running_mean"])  # statistics frozen too
    assert model["fc.weight"].shape == (10, 512)


def test_unfreeze_at_epoch_trains_everything_from_then_on(weights, tmp_path) -> None:
    path, sd = weights
    run = liandan.train(recipe(path, freeze="backbone", unfreeze_at_epoch=2), out=tmp_path / "r", quiet=True)
    assert run.status == "completed"
    assert run.summary["trainable_params"] == run.summary["params"]  # epoch 2 trained every parameter
    assert not torch.equal(run.model.state_dict()["conv1.weight"].contiguous(), sd["conv1.weight"])


def test_weights_that_do_not_fit_are_one_line(tmp_path, cli) -> None:
    bad = tmp_path / "bad.safetensors"
    save_file({"conv1.weight": torch.zeros(64, 3, 7, 7), "not_a_layer.weight": torch.zeros(3)}, str(bad))
    code, _, err = cli("train", "shapes-resnet18", "--set", f"model.weights={bad}", "--set", "model.small_input=false",
                       "--set", "data.n=100", "--out", str(tmp_path / "x"))
    assert code == 2 and err.startswith("error:") and "not_a_layer.weight" in err and len(err.strip().splitlines()) == 1
