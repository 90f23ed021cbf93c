"""Recipe loading, overrides and validation errors."""

from __future__ import annotations

import pytest

from liandan.errors import LiandanError
from liandan.recipe import load_recipe, preset_names, preset_text


@pytest.mark.parametrize("name", preset_names())
def test_presets_validate_and_open_with_launch_command(name: str) -> None:
    first = preset_text(name).splitlines()[0]
    assert first.startswith("# liandan train"), f"{name}: first line must be its launch command"
    r = load_recipe(name)
    assert r.name and r.data.source and r.model.name


def test_overrides_coerce_types() -> None:
    r = load_recipe("digits-mlp", ["optim.lr=3e-4", "train.epochs=5", "model.hidden=[32, 16]",
                                   "train.grad_clip=1", "train.early_stopping.patience=2"])
    assert r.optim.lr == 3e-4 and r.train.epochs == 5 and r.model.options["hidden"] == [32, 16]
    assert r.train.grad_clip == 1.0 and r.train.early_stopping.patience == 2


def test_defaults_filled_and_round_trip(tmp_path) -> None:
    r = load_recipe({"data": {"source": "iris"}, "model": {"name": "mlp"}})
    assert r.optim.name == "adamw" and r.optim.lr == 1e-3 and r.loss.name is None
    p = tmp_path / "r.yaml"
    p.write_text(r.to_yaml())
    assert load_recipe(p) == r


@pytest.mark.parametrize(
    "raw, pattern",
    [
        ({"data": {"source": "iris"}, "model": {"name": "mlp"}, "optimm": {}},
         r"unknown key 'optimm'.*did you mean 'optim'"),
        ({"data": {"source": "iris"}, "model": {"name": "mlp"}, "train": {"epoch": 3}}, r"unknown key 'train.epoch'"),
        ({"data": {"source": "iris"}, "model": {"name": "mlp"}, "train": {"epochs": "many"}}, r"train.epochs"),
        ({"data": {"source": "iris"}, "model": {"name": "mpl"}}, r"unknown model 'mpl'.*did you mean 'mlp'"),
        ({"data": {"source": "irs"}, "model": {"name": "mlp"}}, r"unknown data source 'irs'"),
        ({"data": {"source": "iris"}, "model": {"name": "mlp", "hiden": [3]}}, r"unknown option 'hiden'"),
        ({"data": {"source": "iris"}, "model": {"name": "mlp"}, "optim": {"name": "adamx"}}, r"unknown optimizer"),
        ({"data": {"source": "iris"}}, r"missing required key 'model'"),
        ({"data": {"source": "iris", "split": [0.5, 0.2]}, "model": {"name": "mlp"}}, r"split"),
        ({"data": {"source": "iris"}, "model": {"name": "mlp"}, "train": {"precision": "fp16", "device": "cpu"}},
         r"fp16 needs a CUDA GPU"),
    ],
)
def test_bad_recipes_name_the_key(raw, pattern) -> None:
    with pytest.raises(LiandanError, match=pattern):
        load_recipe(raw)


def test_missing_file_and_unknown_preset() -> None:
    with pytest.raises(LiandanError, match="recipe file not found"):
        load_recipe("nope/recipe.yaml")
    with pytest.raises(LiandanError, match="presets: "):
        load_recipe("digits-lenett")
