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
    merge: Path = typer.Option(None, "--merge", help="Also write the fine-tune with its adapter folded into the "
                               "weights as a plain Hugging Face directory (AutoModel + tokenizer load it)."),
) -> None:
    """Fine-tune a trained run: its weights load (and freeze under an adapter); prints the run directory."""
    from liandan.llm.finetune import finetune as run_finetune

    run = run_finetune(base_run, recipe, adapter=adapter, overrides=set_ or None, out=out, quiet=quiet, merge=merge)
    if json_:
        print_json({"dir": str(run.dir), **run.summary})
    else:
        typer.echo(str(run.dir))
    raise typer.Exit({"completed": 0, "stopped_early": 0, "interrupted": 130}.get(run.status, 1))


@app.command("merge")
def merge_cmd(
    source: Path = typer.Argument(..., help="A run trained through an adapter, or a Hugging Face model directory "
                                  "(with --adapter)."),
    out: Path = typer.Argument(..., help="The directory to write (save_pretrained layout, tokenizer included)."),
    adapter: Path = typer.Option(None, "--adapter", help="A peft adapter directory (adapter_config.json + "
                                 "adapter_model.safetensors) to merge into SOURCE."),
    tokenizer: Path = typer.Option(None, "--tokenizer", help="Where to take the tokenizer files from (default: the "
                                   "run's hf/ or the base model's directory)."),
) -> None:
    """Fold an adapter into its base weights: a plain directory AutoModelFor...from_pretrained loads."""
    from liandan.llm.finetune import merge as run_merge

    typer.echo(str(run_merge(source, out, adapter=adapter, tokenizer=tokenizer)))
