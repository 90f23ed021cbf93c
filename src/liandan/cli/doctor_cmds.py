"""Doctor verbs: ``liandan doctor RUN_DIR|RECIPE [--fix]``, ``liandan doctor bench``,
``liandan explain TOPIC``. Thin wrappers over :func:`liandan.diagnose`,
:func:`liandan.doctor.bench.run_bench` and :func:`liandan.doctor.explain`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from liandan.cli.app import app, print_json


@app.command()
def doctor(
    target: str = typer.Argument(..., help="A run directory (re-diagnose its logs), a recipe file or preset "
                                 "(short probing run + one-batch overfit check), or 'bench'."),
    fix: bool = typer.Option(False, "--fix", help="Repair: apply the top fix as recipe overrides, retrain, judge; "
                             "repeat up to --rounds times."),
    json_: bool = typer.Option(False, "--json", help="Print one JSON document."),
    set_: list[str] = typer.Option(None, "--set", help="Override a recipe value (recipes only; repeatable)."),
    out: Path = typer.Option(None, "--out", help="Where to put the probing/repair runs (default: a temp dir; "
                             "RUN_DIR/repair for a run)."),
    rounds: int = typer.Option(None, "--rounds", min=1, help="Repair rounds (default: doctor.max_rounds)."),
    memory: Path = typer.Option(None, "--memory", help="SQLite memory of past fixes "
                                "(default $LIANDAN_HOME/memory.db)."),
    quick: bool = typer.Option(False, "--quick", help="bench: only the quick subset."),
    cases: str = typer.Option(None, "--cases", help="bench: comma-separated case names, groups or codes "
                              "(shell patterns too: 'real_*')."),
    split: str = typer.Option(None, "--split", help="bench: only the 'dev' or the 'heldout' half (default: both, "
                              "scored apart with the gap between them)."),
    no_repair: bool = typer.Option(False, "--no-repair", help="bench: detection only (skip the --fix loop)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="bench: run the cases in this many processes."),
    seeds: str = typer.Option(None, "--seeds", help="bench: comma-separated seed offsets added to every recipe's "
                              "seed (e.g. 0,1,2); reports each and mean ± sd of the scores."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """Diagnose a run or a recipe (causes and fixes), repair it with --fix, or run the doctor benchmark."""
    from liandan.doctor.examine import is_run_dir

    if target == "bench" and not is_run_dir(target):
        _bench(quick, cases, not no_repair, rounds, memory, json_, quiet, jobs, seeds, split)
        return
    import liandan
    from liandan.doctor.findings import format_document
    from liandan.doctor.repair import format_report

    def echo(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    doc = liandan.diagnose(target, fix=fix, overrides=set_ or None, out=out, rounds=rounds, memory=memory,
                           quiet=quiet or json_, echo=echo)
    if json_:
        print_json(doc)
    else:
        typer.echo(format_report(doc) if fix else format_document(doc))


def _bench(quick: bool, cases: str | None, repair: bool, rounds: int | None, memory: Path | None, json_: bool,
           quiet: bool, jobs: int, seeds: str | None = None, split: str | None = None) -> None:
    from liandan.doctor.bench import format_seeds, format_summary, run_bench, run_seeds

    def echo(line: str) -> None:
        if quiet:
            return
        print(line, file=sys.stderr if json_ else sys.stdout, flush=True)

    names = [c.strip() for c in cases.split(",") if c.strip()] if cases else None
    if seeds:
        try:
            offsets = [int(k) for k in seeds.split(",") if k.strip()]
        except ValueError:
            raise typer.BadParameter(f"--seeds takes comma-separated integers, not {seeds!r}") from None
        doc = run_seeds(names, seeds=offsets, quick=quick, repair=repair, rounds=rounds or 3, memory=memory,
                        echo=echo, jobs=jobs, split=split)
        if json_:
            print_json(doc)
        else:
            typer.echo(format_seeds(doc))
        return
    doc = run_bench(names, quick=quick, repair=repair, rounds=rounds or 3, memory=memory, echo=echo, jobs=jobs,
                    split=split)
    if json_:
        print_json(doc)
    else:
        typer.echo(format_summary(doc))


@app.command()
def explain(topic: str = typer.Argument(None, help="A problem code (e.g. exploding_gradients) or a concept "
                                        "(batchnorm, warmup, he_init, ...); omit to list topics.")) -> None:
    """Explain a problem or concept from the doctor's knowledge base: causes, fixes and why they work."""
    from liandan.doctor import explain as _explain
    from liandan.doctor.knowledge import topics

    if topic is None:
        typer.echo("topics: " + ", ".join(topics()))
        return
    typer.echo(_explain(topic), nl=False)
