"""Does every doctor bench case show its fault in the metrics?

A bench case claims a fault; the claim must be visible without the doctor, or the bench would
reward a doctor for naming faults that do not hurt. Each faulty case is trained as written and
as its ``fix`` (the patch the source's answer applied: recipe overrides, ``inject: null`` removes
a planted fault) with the doctor off, and both are scored by the repair judge
(:func:`liandan.doctor.judge.judge_metrics`: validation accuracy for classification, R² for
regression, whatever loss or task either run trains with). The fault *shows* when, on every seed
offset checked,

- the faulty run's outputs or loss are not finite (NaN/inf, skipped steps, status diverged) and,
  where the case has a fix, the fixed run's are finite (the fix is what cured it), or
- the fixed run beats it by at least ``--margin`` (0.05 accuracy or R²; for a language model,
  whose outputs the judge cannot score, the validation loss is ≥ 10 % lower), or
- (cases expecting ``overfitting``) its train − validation gap is ≥ 0.1 and ≥ the fixed run's
  gap + 0.05.

A case expecting ``nonfinite_loss`` shows only by the first: its fault is the NaN itself, so a run
that stays finite and merely learns worse (a rate too high that never overflows) does not carry it.

A healthy case must learn: accuracy at least halfway from chance to 1, R² ≥ 0.3, or a language
model's validation loss under 60 % of ln(vocabulary). A case that fails is removed from the
bench, not explained away.

    python bench/doctor_case_check.py [--cases 'real_*'] [--seeds 0,1,2] [--jobs 2] [--json out.json]

Last line: ``N/M cases show their fault (or learn, if healthy) on every seed``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MARGIN = 0.05


def _split_metrics(run: Any, split: str) -> dict[str, Any] | None:
    """The judge's metrics on ``split`` (None where the judge cannot score this model's outputs)."""
    from types import SimpleNamespace

    from liandan.doctor.judge import judge_metrics

    data = run.data if split == "val" else SimpleNamespace(val=None, eval_batches=run.data.eval_batches)
    try:
        return judge_metrics(run.model, data, run.info)
    except Exception:  # e.g. a language model's (B, T, V) logits
        return None


def train_once(case: Any, root: Path, seed_offset: int, fixed: bool) -> dict[str, Any]:
    from liandan.doctor.bench import case_overrides, case_recipe, injector
    from liandan.runs import RunDir
    from liandan.training.api import train

    fix = dict(case.fix or {})
    inject = fix.pop("inject", case.inject) if fixed else case.inject
    ov = {**case_overrides(case, seed_offset), "doctor.enabled": False, **(fix if fixed else {})}
    out = root / f"{case.name}-s{seed_offset}-{'fixed' if fixed else 'faulty'}"
    recipe = case_recipe(case, out, case_overrides(case, seed_offset))  # the pre-trained base, if any
    cbs = injector(inject)
    run = train(recipe, overrides=ov, out=out / "run", callbacks=cbs() if cbs else None, quiet=True)
    summary = RunDir(run.dir).summary()
    final = summary.get("final", {})
    val_loss = (final.get("val") or {}).get("loss")
    return {"status": run.status, "bad_steps": summary.get("bad_steps", 0), "val": _split_metrics(run, "val"),
            "train": _split_metrics(run, "train"), "val_loss": val_loss, "vocab": run.info.vocab_size,
            "classes": run.info.num_classes if run.info.class_names else None}


def _nonfinite(r: dict[str, Any]) -> bool:
    v = r["val"]
    bad_loss = r["val_loss"] is not None and not math.isfinite(r["val_loss"])
    return r["status"] == "diverged" or r["bad_steps"] > 0 or bad_loss or (v is not None and v["metric"] is None)


def _scored(m: dict[str, Any] | None) -> bool:
    """Is ``m`` a metric the judge ranks higher-is-better (accuracy, R²)? A language model's is its
    validation loss (``higher: False``), compared as such below."""
    return m is not None and m.get("higher", True)


def learns(run: dict[str, Any]) -> tuple[bool, str]:
    """(does ``run`` learn?, why): accuracy at least halfway from chance to 1, R² ≥ 0.3, or a
    language model's validation loss under 60 % of ln(vocabulary)."""
    v = run["val"]
    if not _scored(v):  # a language model: loss against the uniform guess, ln |V|
        ok = run["val_loss"] is not None and run["val_loss"] < 0.6 * math.log(run["vocab"] or 2)
        return ok, f"val loss {run['val_loss']} vs ln|V| {math.log(run['vocab'] or 2):.3f}"
    if v["metric"] is None:
        return False, "outputs not finite"
    if v["name"] == "accuracy":
        chance = 1 / (run["classes"] or 2)
        bar = chance + 0.5 * (1 - chance)
        return v["metric"] >= bar, f"val accuracy {v['metric']:.3f} (bar {bar:.3f})"
    return v["metric"] >= 0.3, f"val R² {v['metric']:.3f} (bar 0.300)"


def verdict(case: Any, faulty: dict[str, Any], fixed: dict[str, Any] | None) -> tuple[bool, str]:
    """(shows?, why) for one seed."""
    fv = faulty["val"]
    if case.healthy:
        return learns(faulty)
    if _nonfinite(faulty):
        why = f"not finite ({faulty['status']}, {faulty['bad_steps']} bad steps)"
        if not case.fix:  # a planted fault with no fix to compare: the NaN is what it claims
            return True, why
        # a NaN shows any fault: the case's fix must then be what cured it (its outputs and loss finite)
        cured = not _nonfinite(fixed)
        return cured, f"{why}; fixed run {learns(fixed)[1] if cured else 'not finite: the fix does not cure it'}"
    if "nonfinite_loss" in case.expect:  # its fault is the NaN itself: a run that only learns worse lacks it
        return False, "expects nonfinite_loss, but every loss and output stayed finite"
    xv = fixed["val"]
    if not _scored(fv) or not _scored(xv):  # a language model: validation losses
        a, b = faulty["val_loss"], fixed["val_loss"]
        ok = a is not None and b is not None and b <= 0.9 * a
        return ok, f"val loss {a} → fixed {b}"
    gain = (xv["metric"] or 0.0) - fv["metric"] if xv["name"] == fv["name"] else float("nan")
    fixed_metric = "not finite" if xv["metric"] is None else f"{xv['metric']:.3f}"
    why = f"val {fv['name']} {fv['metric']:.3f} → fixed {fixed_metric}"
    if gain >= MARGIN:
        return True, why
    if "overfitting" in case.expect and faulty["train"] and fixed["train"]:
        gap_f = faulty["train"]["metric"] - fv["metric"]
        gap_x = fixed["train"]["metric"] - (xv["metric"] or 0.0)
        why += f"; train−val gap {gap_f:.3f} vs fixed {gap_x:.3f}"
        if gap_f >= 0.1 and gap_f >= gap_x + MARGIN:
            return True, why
    return False, why


def check(args: tuple) -> dict[str, Any]:
    import torch

    case, root, seed_offset = args
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    faulty = train_once(case, root, seed_offset, fixed=False)
    fixed = None if case.healthy else train_once(case, root, seed_offset, fixed=True)
    ok, why = verdict(case, faulty, fixed)
    return {"name": case.name, "seed": seed_offset, "shows": ok, "why": why,
            "wall_s": round(time.perf_counter() - t0, 1)}


def _show(r: dict[str, Any]) -> None:
    print(f"{'ok ' if r['shows'] else 'NO '} {r['name']:<52} s{r['seed']}  {r['why']}  {r['wall_s']}s", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="real_*", help="comma-separated case names, groups or patterns")
    p.add_argument("--seeds", default="0", help="seed offsets, e.g. 0,1,2")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--json", help="write the per-case results here")
    a = p.parse_args()
    os.environ.setdefault("LIANDAN_DOCTOR_STRICT", "1")
    from liandan.doctor.bench import load_cases

    cases = load_cases([c.strip() for c in a.cases.split(",") if c.strip()])
    seeds = [int(s) for s in a.seeds.split(",")]
    work = [(c, None, s) for c in cases for s in seeds]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="liandan-casecheck-") as tmp:
        work = [(c, Path(tmp), s) for c, _, s in work]
        if a.jobs > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(a.jobs, mp_context=mp.get_context("fork")) as ex:
                results = []
                for r in ex.map(check, work):
                    results.append(r)
                    _show(r)
        else:
            results = []
            for w in work:
                results.append(check(w))
                _show(results[-1])
    by: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault(r["name"], []).append(r)
    failing = sorted(n for n, rs in by.items() if not all(r["shows"] for r in rs))
    if a.json:
        Path(a.json).write_text(json.dumps({"results": results, "failing": failing}, indent=1))
    for n in failing:
        print(f"FAILS: {n}", file=sys.stderr)
    print(f"wall {time.perf_counter() - t0:.0f}s")
    print(f"{len(by) - len(failing)}/{len(by)} cases show their fault (or learn, if healthy) on every seed "
          f"({','.join(map(str, seeds))})")


if __name__ == "__main__":
    main()
