"""Verbs that train and use models: demo, train, resume, evaluate, predict."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from liandan.cli.app import ARGV, app, print_json

SET_HELP = "Override a recipe value: --set optim.lr=3e-4 (repeatable)."


def _exit_code(status: str) -> int:
    """0 for a finished run, 130 (as for Ctrl-C) for an interrupted one, 1 otherwise."""
    return {"completed": 0, "stopped_early": 0, "interrupted": 130}.get(status, 1)


@app.command()
def demo(out: Path = typer.Option(None, "--out", help="Run directory (default runs/<name>-<time>).")) -> None:
    """Train the default preset (digits-lenet) with the doctor on, and print where the run is."""
    import liandan

    run = liandan.train("digits-lenet", out=out)
    test = run.summary["final"].get("test", {})
    typer.echo(f"test accuracy: {test.get('accuracy', float('nan')):.4f}")
    report = run.dir / "report.html"
    typer.echo(f"run directory: {run.dir}")
    if report.exists():
        typer.echo(f"report: {report}")


@app.command()
def train(
    recipe: str = typer.Argument("digits-lenet", help="Recipe file or preset name (liandan list presets)."),
    set_: list[str] = typer.Option(None, "--set", help=SET_HELP),
    out: Path = typer.Option(None, "--out", help="Run directory (default runs/<name>-<time>)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
    json_: bool = typer.Option(False, "--json", help="Print summary.json on stdout."),
    nproc: int = typer.Option(1, "--nproc", help="Processes on this node (data parallel through torchrun)."),
    nnodes: int = typer.Option(1, "--nnodes", help="Nodes taking part (multi-node: same flags on each)."),
    node_rank: int = typer.Option(0, "--node-rank", help="This node's rank, 0..nnodes-1."),
    master: str = typer.Option(None, "--master", help="ADDR:PORT of the rank-0 node (multi-node)."),
    trust: bool = typer.Option(False, "--trust", help="Allow model: {name: package.module:ClassName} to import "
                               "user code (runs that code; model.trust: true in the recipe does the same)."),
) -> None:
    """Train a model from a recipe; writes a run directory."""
    if nproc > 1 or nnodes > 1:
        from liandan.training.distributed import launch

        raise typer.Exit(launch(_strip_launch_flags(ARGV), nproc, nnodes, node_rank, master))
    import liandan

    run = liandan.train(recipe, overrides=set_ or None, out=out, quiet=quiet, trust=trust)
    if os.environ.get("RANK", "0") != "0":  # torchrun worker: rank 0 speaks for the job
        raise typer.Exit(_exit_code(run.status))
    if json_:
        print_json({"dir": str(run.dir), **run.summary})
    else:
        typer.echo(str(run.dir))
    raise typer.Exit(_exit_code(run.status))


def _strip_launch_flags(argv: list[str]) -> list[str]:
    """The command line minus the launcher's own flags, for the torchrun workers."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in ("--nproc", "--nnodes", "--node-rank", "--master"):
            skip = "=" not in a
            continue
        out.append(a)
    return out


@app.command()
def resume(run_dir: Path = typer.Argument(..., help="Run directory to continue."),
           quiet: bool = typer.Option(False, "--quiet", "-q"),
           nproc: int = typer.Option(1, "--nproc", help="Processes (data parallel through torchrun).")) -> None:
    """Continue a run from its newest complete checkpoint."""
    if nproc > 1:
        from liandan.training.distributed import launch

        raise typer.Exit(launch(_strip_launch_flags(ARGV), nproc))
    import liandan

    run = liandan.resume(run_dir, quiet=quiet)
    typer.echo(str(run.dir))
    raise typer.Exit(_exit_code(run.status))


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="Run directory."),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    source: str = typer.Option(None, "--source", help="Evaluate on another data source or a shift (rotate:30)."),
    json_: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Evaluate a trained run: metrics, per-class table, confusion matrix, calibration."""
    import liandan

    res = liandan.evaluate(run_dir, split=split, source=source)
    if json_:
        print_json({"split": split, **res})
        return
    for k, v in res.items():
        if isinstance(v, float | int) and not isinstance(v, bool):
            typer.echo(f"{split}.{k} = {v:.6g}")
    for row in res.get("per_class", []) or []:
        typer.echo("  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))


@app.command()
def predict(
    model: Path = typer.Argument(..., help="Run directory, or a whole-model .pt file (needs --trust)."),
    inputs: list[str] = typer.Argument(..., help="Image files, .npy/.csv files (a header row: columns matched by "
                                       "name), folders, glob patterns, or comma-separated feature values."),
    json_: bool = typer.Option(False, "--json", help="Print one JSON document."),
    trust: bool = typer.Option(False, "--trust", help="Allow unpickling a whole-model file (runs its code)."),
    top: int = typer.Option(3, "--top", help="Classes to show per input."),
    out: Path = typer.Option(None, "--out", help="Also write the predictions to this CSV file "
                             "(input, prediction, probability)."),
) -> None:
    """Predict with a trained run (or a saved whole model) on files or literal feature vectors:
    top classes, a regressor's value, a captioner's caption, or a CLIP run's zero-shot classes."""
    import liandan

    preds = liandan.predict(model, inputs, trust=trust, top=top)
    if out is not None:
        from liandan.prediction import write_predictions

        write_predictions(preds, out)
    if json_:
        print_json({"predictions": preds})
        return
    for p in preds:
        if "classes" in p:
            best = ", ".join(f"{c['label']} {c['prob']:.3f}" for c in p["classes"])
            typer.echo(f"{p['input']}: {best}")
        elif "caption" in p:
            typer.echo(f"{p['input']}: {p['caption']}")
        else:
            typer.echo(f"{p['input']}: {p['value']}")


@app.command("lr-find")
def lr_find(
    recipe: str = typer.Argument(..., help="Recipe file or preset name."),
    set_: list[str] = typer.Option(None, "--set", help=SET_HELP),
    out: Path = typer.Option(Path("."), "--out", help="Folder for lr_find.csv and lr_find.png."),
    start_lr: float = typer.Option(1e-7, help="First learning rate of the sweep."),
    end_lr: float = typer.Option(10.0, help="Last learning rate of the sweep."),
    steps: int = typer.Option(100, help="Steps in the sweep."),
    json_: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Learning-rate range test: sweep the rate exponentially and suggest one."""
    import liandan

    res = liandan.lr_find(recipe, overrides=set_ or None, start_lr=start_lr, end_lr=end_lr, num_steps=steps, out=out)
    low, high = res.usable
    doc = {"suggestion": res.suggestion, "usable": [low, high], "diverged_at": res.diverged_at,
           "informative": res.informative, "csv": res.csv_path, "plot": res.plot_path, "points": len(res.lrs)}
    if json_:
        print_json(doc)
    else:
        if not res.informative:
            typer.echo(f"the loss never fell 5 % during the sweep: no rate can be read (curve: {res.csv_path})")
            return
        broke = f"; training broke at {res.diverged_at:.3g}" if res.diverged_at else ""
        typer.echo(f"suggested learning rate: {res.suggestion:.3g}  (usable {low:.3g} … {high:.3g}{broke}; "
                   f"curve: {res.csv_path})")
