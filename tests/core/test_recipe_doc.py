"""docs/recipe.md lists every recipe key, generated from the pydantic schema, and is up to date."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from liandan.recipe import Recipe
from liandan.recipe_doc import markdown, recipe_keys

PAGE = Path(__file__).resolve().parents[2] / "docs" / "recipe.md"


def test_docs_recipe_md_is_up_to_date() -> None:
    assert PAGE.is_file(), "generate it: python -m liandan.recipe_doc > docs/recipe.md"
    assert PAGE.read_text() == markdown(), (
        "docs/recipe.md is out of date with the recipe schema: python -m liandan.recipe_doc > docs/recipe.md")


def _schema_paths(schema: dict, node: dict, prefix: str = "") -> set[str]:
    """Dotted keys of the JSON schema, following $refs through optional sections and lists."""
    out = set()
    for name, prop in node.get("properties", {}).items():
        path = prefix + name
        out.add(path)
        for alt in [prop, *prop.get("anyOf", [])]:
            many = alt.get("type") == "array" and "$ref" in alt.get("items", {})
            ref = alt["items"]["$ref"] if many else alt.get("$ref")
            if ref:
                sub = schema["$defs"][ref.rsplit("/", 1)[1]]
                out |= _schema_paths(schema, sub, path + ("[]." if many else "."))
    return out


def test_every_key_of_the_json_schema_is_listed_with_a_description() -> None:
    rows = recipe_keys()
    listed = {r.key for r in rows if not r.key.endswith(".<option>")}
    schema = Recipe.model_json_schema()
    assert listed == _schema_paths(schema, schema)
    assert all(r.description and r.type for r in rows), [r.key for r in rows if not r.description]
    keys = {r.key: r for r in rows}
    assert keys["data"].default == "required" and keys["train.epochs"].default == "20"
    assert keys["train.precision"].type == "fp32 | bf16 | fp16"
    assert keys["train.grad_clip"].type == "float | null (> 0)" and keys["train.grad_clip"].default == "null"
    assert keys["train.early_stopping"].type == "section | null"
    assert "model.<option>" in keys and "train.callbacks[].name" in keys


def test_a_new_field_shows_in_the_generated_keys() -> None:
    class Wider(Recipe):
        budget_s: float | None = Field(None, gt=0, description="stop after this many seconds")

    row = next(r for r in recipe_keys(Wider) if r.key == "budget_s")
    assert (row.type, row.default, row.description) == ("float | null (> 0)", "null", "stop after this many seconds")
