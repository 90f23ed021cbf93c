"""A user's own nn.Module: passed to ``liandan.train(model=...)``, or named in a recipe as
``package.module:ClassName`` (imported only on explicit trust)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import liandan
from liandan.errors import LiandanError
from liandan.runs import RunDir
from liandan.training.run import load_run

FAST = {"train.epochs": 1, "doctor.enabled": False, "train.tensorboard": False, "report": False}
HERE = str(Path(__file__).parent)
DATA = {"source": "digits", "batch_size": 64}


@pytest.fixture(autouse=True)
def helper_on_path(monkeypatch):
    monkeypatch.syspath_prepend(HERE)  # the user's code: user_models_helper.py beside this file


def test_train_a_module_instance_records_how_to_rebuild_it(tmp_path) -> None:
    from user_models_helper import FCNet

    net = FCNet(64, [32], 10)
    run = liandan.train({"data": DATA}, overrides=FAST, out=tmp_path / "r", quiet=True, model=net)
    assert run.status == "completed" and run.model is net
    section = RunDir(run.dir).raw_recipe()["model"]
    assert section == {**section, "name": "user_models_helper:FCNet", "trust": True, "input_size": 64,
                       "hidden": [32], "num_classes": 10}
    back = load_run(run.dir)  # rebuilt from recipe.yaml alone
    assert type(back.model).__name__ == "FCNet"
    x = torch.rand(3, 1, 8, 8)
    net.eval()
    assert torch.equal(back.model(x), net(x))


def test_module_the_recipe_cannot_rebuild_loads_when_passed_back(tmp_path) -> None:
    from user_models_helper import Opaque

    net = Opaque(16)
    recipe = {"data": DATA, "model": {"name": "mlp"}}  # a model section is ignored when model= is given
    run = liandan.train(recipe, overrides=FAST, out=tmp_path / "r", quiet=True, model=net)
    assert RunDir(run.dir).raw_recipe()["model"]["name"] == "user_models_helper:Opaque"
    with pytest.raises(LiandanError, match="load_run"):
        load_run(run.dir)
    back = load_run(run.dir, model=Opaque(16))
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(back.model(x), net.eval()(x))


def test_recipe_names_user_code_only_with_trust(tmp_path) -> None:
    recipe = {"data": DATA, "model": {"name": "user_models_helper:FCNet", "hidden": [32]}}
    with pytest.raises(LiandanError, match="trust"):
        liandan.train(recipe, overrides=FAST, out=tmp_path / "no", quiet=True)
    run = liandan.train(recipe, overrides=FAST, out=tmp_path / "r", quiet=True, trust=True)
    assert run.status == "completed"
    assert run.summary["final"]["test"]["accuracy"] > 0.3
    m = run.model
    assert type(m).__name__ == "FCNet" and m.num_classes == 10 and m.hidden == [32]  # num_classes from the data
    assert RunDir(run.dir).raw_recipe()["model"]["trust"] is True


def test_trust_in_the_model_section_and_the_cli(tmp_path, cli) -> None:
    recipe = {"data": DATA, "model": {"name": "user_models_helper:FCNet", "trust": True}}
    assert liandan.train(recipe, overrides=FAST, out=tmp_path / "r", quiet=True).status == "completed"
    path = tmp_path / "fc.yaml"
    path.write_text("data: {source: digits}\nmodel: {name: 'user_models_helper:FCNet', hidden: [16]}\n")
    sets = [a for k, v in FAST.items() for a in ("--set", f"{k}={v}")]
    code, _, err = cli("train", str(path), "--out", str(tmp_path / "c0"), "-q", *sets)
    assert code == 2 and "trust" in err and len(err.strip().splitlines()) == 1
    code, out, err = cli("train", str(path), "--out", str(tmp_path / "c1"), "-q", "--trust", *sets)
    assert code == 0, err
    assert "user_models_helper" in sys.modules
