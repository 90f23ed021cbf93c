"""The ``generate`` verb: sample text from a language-model run, or score its exact match."""

from __future__ import annotations

from pathlib import Path

import typer

from liandan.cli.app import app, print_json


@app.command()
def generate(
    run_dir: Path = typer.Argument(..., help="Run directory of a trained language model (task lm)."),
    prompt: str = typer.Option("", "--prompt", "-p", help="Text to continue."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Most tokens to add."),
    temperature: float = typer.Option(1.0, "--temperature", help="0: greedy; < 1 sharper, > 1 flatter."),
    top_k: int = typer.Option(None, "--top-k", help="Sample among the k most likely tokens only."),
    top_p: float = typer.Option(None, "--top-p", help="Nucleus: the most likely tokens up to this probability."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling generator."),
    exact: bool = typer.Option(False, "--exact-match", help="Instead: greedy-answer every problem of --split "
                               "and report the share answered exactly."),
    split: str = typer.Option("test", "--split", help="Split for --exact-match."),
    json_: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Generate text from a language-model run (temperature, top-k, top-p sampling)."""
    import liandan

    if exact:
        res = liandan.exact_match(run_dir, split=split)
        if json_:
            print_json(res)
        else:
            typer.echo(f"exact match on {res['split']}: {res['exact_match']:.4f} ({res['n']} problems)")
        return
    res = liandan.generate(run_dir, prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                           top_k=top_k, top_p=top_p, seed=seed)
    if json_:
        print_json(res)
    else:
        typer.echo(prompt + res["completion"])
