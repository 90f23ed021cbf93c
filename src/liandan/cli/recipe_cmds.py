"""``liandan recipe``: the recipe's keys (a table, JSON, the docs/recipe.md page) or its JSON schema."""

from __future__ import annotations

import typer

from liandan.cli.app import app, print_json


@app.command("recipe")
def recipe(
    schema: bool = typer.Option(False, "--schema", help="Print the recipe's JSON schema (pydantic)."),
    keys: bool = typer.Option(False, "--keys", help="Print every recipe key: dotted path, type, default, "
                              "description (the default)."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the docs/recipe.md page."),
    json_: bool = typer.Option(False, "--json", help="With --keys: one JSON document of the keys."),
) -> None:
    """Describe the recipe: every key with its type, default and description, or the JSON schema."""
    from liandan import recipe_doc
    from liandan.errors import LiandanError

    if schema + keys + markdown > 1:
        raise LiandanError("choose one of --schema, --keys, --markdown")
    if schema:
        print_json(recipe_doc.schema())
    elif markdown:
        typer.echo(recipe_doc.markdown(), nl=False)
    elif json_:
        print_json(recipe_doc.keys_json())
    else:
        typer.echo(recipe_doc.text_table())
