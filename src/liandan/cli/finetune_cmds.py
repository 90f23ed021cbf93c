"""The finetune verb: train from a finished run (model.from_run), through an adapter if asked."""

from __future__ import annotations

from pathlib import Path

import typer

from liandan.cli.app import app, print_json


@app.command()
def finetune(
    base_run: Path = typer.Argument(..., help="The trained run to start from."),
    recipe: str = typer.Argument(None, help="Recipe file or preset for the new data (default: the base run's)."),
    adapter: str = typer.Option(None, "--adapter", help="PEFT method (liandan list adapters); options via "
                                "--set adapter.r=16. Default: the recipe's adapter, else full fine-tuning."),
    set_: list[str] = typer.Option(None, "--set", help="Override a recipe value (repeatable)."),
    out: Path = typer.Option(None, "--out", help="Run directory (default runs/<name>-<time>)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
    json_: bool = typer.Option(False, "--json", help="Print summary.json on stdout."),
) -> None:
    """Fine-tune a trained run: its weights load (and freeze under an adapter); prints the run directory."""
    from liandan.llm.finetune import finetune as run_finetune

    run = run_finetune(base_run, recipe, adapter=adapter, overrides=set_ or None, out=out, quiet=quiet)
    if json_:
        print_json({"dir": str(run.dir), **run.summary})
    else:
        typer.echo(str(run.dir))
    raise typer.Exit({"completed": 0, "stopped_early": 0, "interrupted": 130}.get(run.status, 1))
