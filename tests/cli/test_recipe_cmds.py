"""``liandan recipe``: the keys table, their JSON, the docs page and the JSON schema."""

from __future__ import annotations

import json

from liandan.recipe import Recipe
from liandan.recipe_doc import markdown


def test_recipe_prints_every_key_by_default(cli) -> None:
    code, out, _ = cli("recipe")
    assert code == 0 and out.split()[:4] == ["key", "type", "default", "description"]
    for key in ("data.batch_size", "train.early_stopping.patience", "doctor.probe_budget", "model.<option>"):
        assert any(ln.startswith(key + " ") for ln in out.splitlines()), key
    assert cli("recipe", "--keys")[1] == out


def test_recipe_schema_and_keys_json(cli) -> None:
    code, out, _ = cli("recipe", "--schema")
    assert code == 0 and json.loads(out) == Recipe.model_json_schema()
    code, out, _ = cli("recipe", "--keys", "--json")
    rows = {r["key"]: r for r in json.loads(out)}
    assert code == 0 and rows["optim.lr"] == {"key": "optim.lr", "type": "float (> 0)", "default": "0.001",
                                              "description": "learning rate"}


def test_recipe_markdown_and_conflicting_flags(cli) -> None:
    code, out, _ = cli("recipe", "--markdown")
    assert code == 0 and out == markdown()
    code, _, err = cli("recipe", "--schema", "--keys")
    assert code == 2 and err.startswith("error:")
