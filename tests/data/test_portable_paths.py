"""Relative data paths resolve against the recipe file and are stored absolute, so a run works from
any folder; a missing file says where it was looked for."""

from __future__ import annotations

import pytest
import yaml

import liandan
from liandan.errors import LiandanError
from liandan.recipe import load_recipe
from tests.data.samples import write_csv


def test_relative_csv_path_resolves_against_the_recipe_and_is_stored_absolute(tmp_path, monkeypatch) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    write_csv(proj)
    (proj / "recipe.yaml").write_text(yaml.safe_dump({
        "data": {"source": "csv", "path": "data.csv", "target": "label"}, "model": {"name": "mlp"},
        "train": {"epochs": 1}, "doctor": {"enabled": False}}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = liandan.train(str(proj / "recipe.yaml"), out=tmp_path / "run", quiet=True)
    stored = yaml.safe_load((run.dir / "recipe.yaml").read_text())["data"]["path"]
    assert stored == str(proj / "data.csv")
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    res = liandan.evaluate(run.dir)
    assert "accuracy" in res


def test_missing_file_says_where_it_was_looked_for(tmp_path, monkeypatch) -> None:
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({
        "data": {"source": "csv", "path": "nope.csv"}, "model": {"name": "mlp"}}))
    monkeypatch.chdir(tmp_path.parent)
    rec = load_recipe(str(tmp_path / "r.yaml"))
    assert rec.data.options["path"] == str(tmp_path / "nope.csv")
    from liandan.data.pipeline import build_data

    with pytest.raises(LiandanError, match=f"path not found: .*looked for {tmp_path / 'nope.csv'}"):
        build_data(rec.data)
