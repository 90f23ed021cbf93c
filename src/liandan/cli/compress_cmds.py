"""Verb ``compress``: quantise, prune or distill a trained run (liandan.compress.compress)."""

from __future__ import annotations

from pathlib import Path

import typer

from liandan.cli.app import app, parse_sets, print_json


@app.command()
def compress(
    run_dir: Path = typer.Argument(..., help="Run directory of a trained model (the teacher for distill)."),
    method: str = typer.Option("quantize", "--method", "-m", help="quantize (dynamic int8), prune or distill."),
    amount: float = typer.Option(0.5, "--amount", help="prune: share of weights (or hidden units) removed, in (0, 1)."),
    structured: bool = typer.Option(False, "--structured", help="prune: remove whole hidden units (smaller, faster)."),
    finetune_epochs: int = typer.Option(0, "--finetune-epochs", help="prune: retrain this many epochs afterwards."),
    student: str = typer.Option(None, "--student", help="distill: the student's preset or recipe file."),
    sets: list[str] = typer.Option(None, "--set", help="distill: student recipe override k=v (repeatable)."),
    temperature: float = typer.Option(4.0, "--temperature", help="distill: softmax temperature T."),
    alpha: float = typer.Option(0.9, "--alpha", help="distill: weight of the teacher's soft targets."),
    dtype: str = typer.Option("qint8", "--dtype", help="quantize: qint8 or float16."),
    out: Path = typer.Option(None, "--out", help="Output directory (default RUN_DIR-int8 / RUN_DIR-pruned / "
                             "runs/<student>-distilled-<time>)."),
    json_: bool = typer.Option(False, "--json", help="Print one JSON document (compress.json)."),
) -> None:
    """Compress a trained run; writes OUT/compress.json with size, accuracy and latency before/after.

    quantize: int8 Linear/LSTM/GRU weights (Jacob et al. 2018). prune: global magnitude pruning
    (Han et al. 2015) or, with --structured, hidden-unit removal (Li et al. 2017). distill: train
    --student against RUN_DIR's soft targets (Hinton et al. 2015)."""
    from liandan.compress.api import compress as run_compress
    from liandan.compress.api import format_table

    doc = run_compress(run_dir, method, amount=amount, structured=structured, student=student, out=out,
                       finetune_epochs=finetune_epochs, overrides=parse_sets(sets), temperature=temperature,
                       alpha=alpha, dtype=dtype, quiet=json_)
    if json_:
        print_json(doc)
        return
    for line in format_table(doc):
        typer.echo(line)
