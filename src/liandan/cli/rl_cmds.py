"""The alignment verbs: ``liandan grpo`` (RL fine-tuning of an lm run) and ``liandan reward-model``."""

from __future__ import annotations

from pathlib import Path

import typer

from liandan.cli.app import app, print_json


@app.command()
def grpo(
    run_dir: Path = typer.Argument(..., help="A trained language-model run (task lm) with prompted problems (arith)."),
    reward: str = typer.Option("exact", "--reward", help="exact, format, exact+format, or a reward-model directory."),
    steps: int = typer.Option(100, "--steps", help="Policy updates (one batch of prompts each)."),
    group: int = typer.Option(8, "--group", help="Completions sampled per prompt (G ≥ 2)."),
    batch: int = typer.Option(32, "--batch", help="Prompts per step."),
    lr: float = typer.Option(3e-4, "--lr", help="AdamW learning rate (tiny models: 3e-4 to 1e-3)."),
    beta: float = typer.Option(0.04, "--beta", help="KL penalty to the starting policy (0: no reference)."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature of the rollouts."),
    adapter: str = typer.Option(None, "--adapter", help="Train through this PEFT adapter (e.g. lora) instead of "
                                "every weight."),
    seed: int = typer.Option(0, "--seed", help="Seed of prompt draws and sampling."),
    out: Path = typer.Option(None, "--out", help="Run directory (default runs/<name>-grpo-<time>)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
    json_: bool = typer.Option(False, "--json", help="Print summary.json on stdout."),
) -> None:
    """GRPO fine-tuning of a language-model run on a rule or learned reward; prints the new run directory."""
    from liandan.llm.rl import grpo as run_grpo

    run = run_grpo(run_dir, reward, steps=steps, group=group, batch=batch, lr=lr, beta=beta, temperature=temperature,
                   adapter=adapter, seed=seed, out=out, quiet=quiet)
    if json_:
        print_json({"dir": str(run.dir), **run.summary})
    else:
        typer.echo(str(run.dir))


@app.command("reward-model")
def reward_model(
    run_dir: Path = typer.Argument(..., help="A trained language-model run whose transformer carries the head."),
    pairs: int = typer.Option(4000, "--pairs", help="Training pairs (right vs corrupted answer) from the train split."),
    epochs: int = typer.Option(3, "--epochs", help="Passes over the pairs."),
    lr: float = typer.Option(3e-4, "--lr", help="AdamW learning rate."),
    batch_size: int = typer.Option(64, "--batch-size", help="Pairs per step."),
    seed: int = typer.Option(0, "--seed", help="Seed of pair construction and order."),
    out: Path = typer.Option(None, "--out", help="Output directory (default runs/<name>-rm-<time>)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
    json_: bool = typer.Option(False, "--json", help="Print summary.json on stdout."),
) -> None:
    """Train a Bradley–Terry reward model on a run's problems; prints its directory (test pairwise accuracy)."""
    from liandan.llm.rl import reward_model as train_rm

    doc = train_rm(run_dir, pairs=pairs, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, out=out, quiet=quiet)
    if json_:
        print_json(doc)
    else:
        typer.echo(doc["dir"])
