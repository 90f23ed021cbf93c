"""Verbs that judge a trained run: ood (out-of-distribution detection) and report (report.html)."""

from __future__ import annotations

from pathlib import Path

import typer

from liandan.cli.app import app, print_json

OOD_HELP = (
    "OOD inputs: a data source name (liandan list data; options as NAME:key=value,...), mapped to the "
    "run's input shape, or a shift of the run's test split: noise[:STD], rotate:DEG, invert, blur:SIGMA."
)


@app.command()
def ood(
    run_dir: Path = typer.Argument(..., help="Run directory of a trained classifier."),
    ood_: list[str] = typer.Option(..., "--ood", help=OOD_HELP + " Repeat for a sweep: one AUROC table."),
    method: list[str] = typer.Option(
        ["msp"], "--method", help="msp, energy, odin, mahalanobis or all (repeatable or comma-separated)."
    ),
    split: str = typer.Option("test", "--split", help="The in-distribution split."),
    max_samples: int = typer.Option(2000, "--max-samples", help="Cap on ID and OOD samples scored."),
    temperature: float = typer.Option(None, "--temperature", help="ODIN / energy T (default 1000 / 1)."),
    epsilon: float = typer.Option(0.0014, "--epsilon", help="ODIN input perturbation (raw input units)."),
    no_save: bool = typer.Option(False, "--no-save", help="Do not merge the result into RUN_DIR/ood.json."),
    json_: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Detect out-of-distribution inputs: AUROC, FPR@95 (OOD positive), AUPR-In/Out per method.

    Several --ood sources (e.g. --ood rotate:0 --ood rotate:45 --ood rotate:90) share one fit and
    print a sweep: AUROC ± standard error per source and method, and whether it rises within noise."""
    from liandan.evaluation.ood import ood as run_ood
    from liandan.evaluation.ood import ood_sweep

    if len(ood_) > 1:
        results = ood_sweep(run_dir, ood_, method, split=split, max_samples=max_samples, temperature=temperature,
                            epsilon=epsilon, save=not no_save)
        if json_:
            print_json(results)
        else:
            _echo_sweep(results)
        return
    res = run_ood(
        run_dir,
        ood_[0],
        method,
        split=split,
        max_samples=max_samples,
        temperature=temperature,
        epsilon=epsilon,
        save=not no_save,
    )
    if json_:
        print_json(res)
        return
    typer.echo(
        f"ID: {res['id']['source']} {res['id']['split']} ({res['id']['n']})   "
        f"OOD: {res['ood']['source']} ({res['ood']['n']})"
    )
    typer.echo(
        f"{'method':<12}{'AUROC':>8}{'FPR@95':>8}{'AUPR-In':>9}{'AUPR-Out':>10}{'ID flagged':>12}{'OOD flagged':>13}"
    )
    for m, r in res["methods"].items():
        typer.echo(
            f"{m:<12}{r['auroc']:>8.4f}{r['fpr95']:>8.4f}{r['aupr_in']:>9.4f}{r['aupr_out']:>10.4f}"
            f"{r['id_flagged']:>12.3f}{r['ood_flagged']:>13.3f}"
        )
    typer.echo(
        "FPR@95: fraction of ID inputs flagged when 95% of OOD inputs are (OOD positive, as OpenOOD); "
        f"thresholds keep 95% of the {res['calibration_split']} split."
    )


def _echo_sweep(results: list[dict]) -> None:
    from liandan.evaluation.ood_metrics import sweep_advice, sweep_verdicts

    methods = list(results[0]["methods"])
    typer.echo(f"ID: {results[0]['id']['source']} {results[0]['id']['split']} ({results[0]['id']['n']})   AUROC ± SE")
    typer.echo(f"{'OOD source':<22}" + "".join(f"{m:>18}" for m in methods))
    for r in results:
        cells = (f"{r['methods'][m]['auroc']:.3f} ± {r['methods'][m]['auroc_se']:.3f}" for m in methods)
        typer.echo(f"{r['ood']['source']:<22}" + "".join(f"{c:>18}" for c in cells))
    verdicts = sweep_verdicts([r["ood"]["source"] for r in results],
                              {m: [r["methods"][m] for r in results] for m in methods})
    typer.echo(f"{'rises within noise':<22}" + "".join(f"{'yes' if verdicts[m]['rises'] else 'no':>18}"
                                                     for m in methods))
    advice = sweep_advice(verdicts)
    if advice:
        typer.echo(advice)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="Run directory."),
    no_eval: bool = typer.Option(False, "--no-eval", help="Skip re-evaluating the model (curves and files only)."),
    macs: bool = typer.Option(False, "--macs", help="Count MACs per layer (as liandan summary; slower)."),
) -> None:
    """Write RUN_DIR/report.html (self-contained) and RUN_DIR/figures/*.png; prints the report's path."""
    from liandan.report import write_report

    typer.echo(str(write_report(run_dir, evaluate=not no_eval, detailed_model=macs or None)))
