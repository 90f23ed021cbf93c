"""Verbs for generative runs: sample (a PNG grid from a gan or diffusion run)."""

from __future__ import annotations

from pathlib import Path

import typer

from liandan.cli.app import app, print_json


@app.command()
def sample(
    run_dir: Path = typer.Argument(..., help="Run directory of a generative run (task gan or diffusion)."),
    n: int = typer.Option(64, "-n", "--n", help="Number of samples."),
    out: Path = typer.Option(Path("grid.png"), "--out", help="PNG file for the grid."),
    seed: int = typer.Option(0, "--seed", help="Seed of the noise: the same seed gives the same images."),
    steps: int = typer.Option(None, "--steps", help="Diffusion: denoising steps (fewer than T uses DDIM)."),
    scale: int = typer.Option(None, "--scale", help="Pixel repeat factor in the grid (default: up to 32 px)."),
    json_: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Draw samples from a trained GAN or diffusion run and write them as a PNG grid."""
    from liandan.generation.images import sample as draw

    res = draw(run_dir, n=n, out=out, seed=seed, steps=steps, scale=scale)
    if json_:
        print_json(res)
    else:
        typer.echo(f"{res['n']} samples ({'×'.join(map(str, res['shape']))}) in {res['wall_s']:.2f} s: {res['out']}")
