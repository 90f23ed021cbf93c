"""Repair: the doctor as an agent — perceive (probes), decide (rules), act (apply the top fix's
patch as recipe overrides and retrain), judge (is the finding gone and the validation metric
better?), for up to N rounds, remembering outcomes (:mod:`liandan.doctor.memory`).

After AutoTrainer (Zhang et al. ICSE 2021, ``modules.py: solve``): each candidate fix is a full
retrain; a new finding after an accepted fix is chased in the next round. Fixes compound: a fix
is kept when it improves the validation metric (even if its finding is still there — the
learning rate went the right way but not far enough) or removes its finding without making the
metric worse; the next round starts from the recipe with every kept patch — fixes reverted
before it may be tried again on top of it —, so a lowered rate is
lowered again (rates step in powers of ten toward the LR range test's suggestion, see
``rules._common.lower_lr``) and a schedule change keeps the lowered rate. A fix that does
neither is reverted and the next-ranked one tried. A run made healthy without a better metric
(early stopping hides overfitting but need not raise validation accuracy) spends the remaining
rounds on the last findings' other fixes, keeping one only if it improves and stays healthy.
Memory ranks the fixes that worked on similar runs first (:mod:`liandan.doctor.memory`). Every
round's metrics (train / val / test, from the run's summary, and the judge's validation metric) go
to the report and the echo.
Departure from DESIGN.md's "retrains from the last good checkpoint": most patches change the
architecture, the init or the data pipeline, so every round retrains from scratch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from liandan.doctor.findings import Finding, Fix, format_finding
from liandan.doctor.judge import improved, judge_metrics, run_metrics
from liandan.recipe import Recipe, load_recipe


def _train(recipe: Recipe, overrides: dict[str, Any], out: Path, callbacks: Any,
           quiet: bool) -> tuple[Any, list[Finding], dict[str, Any]]:
    from liandan.training.api import train
    from liandan.training.rundir import read_json

    ov = {**overrides, "doctor.auto_fix": False, "doctor.enabled": True, "report": False}
    run = train(recipe, overrides=ov, out=out, callbacks=callbacks() if callbacks else None, quiet=quiet)
    doc = read_json(run.dir / "doctor.json") if (run.dir / "doctor.json").exists() else {"findings": []}
    m = judge_metrics(run.model, run.data, run.info, run.recipe)
    m["splits"] = split_metrics(run.dir)
    return run, [Finding.from_dict(d) for d in doc["findings"]], m


def split_metrics(run_dir: Path) -> dict[str, dict[str, float]]:
    """{split: {"loss", headline metric}} of a finished run's final evaluation (summary.json)."""
    from liandan.training.rundir import read_json

    path = Path(run_dir) / "summary.json"
    if not path.exists():
        return {}
    final = read_json(path).get("final", {})
    keep = ("loss", "accuracy", "r2")
    return {split: {k: v for k, v in ms.items() if k in keep} for split, ms in final.items() if isinstance(ms, dict)}


def worse(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Worse on the judge's metric by more than noise — the judge's tolerance, and for accuracy
    1.5 validation samples (on 18 samples one prediction is 0.056) — or no longer finite."""
    from liandan.doctor.judge import TOL_WORSE, gain

    if new.get("metric") is None:
        return old.get("metric") is not None
    if old.get("metric") is None or new.get("name") != old.get("name"):
        return False
    noise = max(TOL_WORSE, 1.5 / new["n"]) if new.get("name") == "accuracy" and new.get("n") else TOL_WORSE
    return gain(new, old) < -noise


def repair(recipe: str | Path | dict | Recipe, overrides: list[str] | dict | None = None, *, rounds: int | None = None,
           out: str | Path | None = None, memory: Any = None,
           baseline: tuple[Path, list[Finding], dict[str, Any] | None] | None = None,
           callbacks: Any = None, echo: Any = None, quiet: bool = True) -> dict[str, Any]:
    """Diagnose ``recipe`` and repair it for up to ``rounds`` rounds; returns the report.

    ``baseline`` = (run_dir, findings, judge metrics or None) of an already trained run (skips
    round 0's training); ``callbacks`` is a factory of extra training callbacks (the bench plants
    faults with it); ``memory`` a :class:`~liandan.doctor.memory.Memory`, a path, or None for the
    default store.
    """
    from liandan.doctor.memory import Memory, signature

    say = echo or (lambda _m: None)
    base = load_recipe(recipe, overrides)
    n_rounds = rounds or base.doctor.max_rounds
    mem = memory if isinstance(memory, Memory) else Memory(memory or base.doctor.memory)
    root = Path(out) if out else Path(tempfile.mkdtemp(prefix="liandan-repair-"))
    sig = signature(base)
    if baseline is None:
        run, findings, start = _train(base, {}, root / "round-0", callbacks, quiet)
        run_dir = run.dir
    else:
        run_dir, findings, start = baseline
        start = start or run_metrics(run_dir)
        start.setdefault("splits", split_metrics(run_dir))
    for f in findings:
        mem.record_finding(sig, f)
    report: dict[str, Any] = {"recipe": base.name, "metric": start["name"], "rounds": [
        {"round": 0, "dir": str(run_dir), "findings": [f.code for f in findings], "val": start["metric"],
         "val_loss": start["loss"], "metrics": start.get("splits", {})}]}
    say(f"repair round 0: {_found(findings)}; {_metrics_line(start)}")
    accepted: dict[str, Any] = {}
    current, cur, tried = findings, start, set()
    kept: set = set()  # the accepted fixes: never tried twice
    pool = findings  # the findings whose fixes are drawn from (the last ones seen, once healthy)
    for r in range(1, n_rounds + 1):
        # healthy but no better (early stopping hides overfitting without raising the validation
        # metric): the remaining rounds try the last findings' other fixes, kept only if they improve
        polish = not current
        if polish and (not accepted or improved(cur, start) or not pool):
            break
        target, fix = _next_fix(current or pool, mem, sig, tried)
        if fix is None:
            report["rounds"].append({"round": r, "note": "no untried fix with a recipe patch left"})
            break
        key = (target.code, repr(sorted(fix.patch.items())))
        tried.add(key)
        say(f"repair round {r}: {target.code} → {fix.say} ({_sets(fix.patch)})")
        patch = {**accepted, **fix.patch}
        try:
            run, found, m = _train(base, patch, root / f"round-{r}", callbacks, quiet)
        except Exception as e:  # a patch can make the recipe untrainable: count it as a failed fix
            mem.record_attempt(sig, target.code, fix, gone=False, improved=False, before=cur["metric"], after=None)
            report["rounds"].append({"round": r, "finding": target.code, "fix": fix.to_dict(), "error": str(e)[:200],
                                     "accepted": False})
            continue
        gone = target.code not in {f.code for f in found}
        better = improved(m, cur)
        # compound: keep a fix that helps (its finding may need another step) or that cures without harm
        ok = (better and not found) if polish else (better or (gone and not worse(m, cur)))
        mem.record_attempt(sig, target.code, fix, gone=gone, improved=better, before=cur["metric"], after=m["metric"],
                           success=ok)
        report["rounds"].append({"round": r, "finding": target.code, "fix": fix.to_dict(), "dir": str(run.dir),
                                 "findings": [f.code for f in found], "val": m["metric"], "val_loss": m["loss"],
                                 "metrics": m.get("splits", {}), "gone": gone, "improved": better, "accepted": ok})
        say(f"  → {'kept' if ok else 'reverted'}: {target.code} {'gone' if gone else 'still there'}, "
            f"val {start['name']} {_num(cur['metric'])} → {_num(m['metric'])}; {_metrics_line(m)}"
            + (f"; now: {_found(found)}" if ok else ""))
        if ok:
            accepted, current, cur = patch, found, m
            # a fix reverted on the old recipe may help on the new one (a chat template judged on
            # prompt tokens, retried once they are out of the loss): only kept fixes stay tried
            kept.add(key)
            tried = set(kept)
            pool = found or pool
            for f in found:
                if f.code != target.code:
                    say(format_finding(f))
    report.update(overrides=accepted, healthy=not current, final_val=cur["metric"],
                  improved=bool(accepted) and improved(cur, start), findings=[f.code for f in current])
    report["success"] = bool(report["healthy"] and report["improved"])
    return report


def _next_fix(findings: list[Finding], mem: Any, sig: dict[str, str], tried: set) -> tuple[Finding, Fix | None]:
    """The most severe finding with an untried patch, and its best-ranked untried fix."""
    for f in findings:
        for fx in mem.rank(f.code, sig, [x for x in f.fixes if x.patch]):
            if (f.code, repr(sorted(fx.patch.items()))) not in tried:
                return f, fx
    return findings[0], None


def _sets(patch: dict[str, Any]) -> str:
    from liandan.doctor.findings import _fmt

    return " ".join(f"--set {k}={_fmt(v)}" for k, v in patch.items())


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _found(findings: list[Finding]) -> str:
    return "findings " + (", ".join(f.code for f in findings) or "none")


def _metrics_line(m: dict[str, Any]) -> str:
    """"train accuracy 0.99 loss 0.03 | val ... | test ..." from a round's summary metrics."""
    parts = []
    for split in ("train", "val", "test"):
        ms = (m.get("splits") or m.get("metrics") or {}).get(split)
        if ms:
            parts.append(f"{split} " + " ".join(f"{k} {v:.4g}" for k, v in ms.items() if isinstance(v, (int, float))))
    return " | ".join(parts) or f"val {m.get('name', 'metric')} {_num(m.get('metric'))}"


def format_report(rep: dict[str, Any]) -> str:
    lines = [f"repair of {rep['recipe']} ({len(rep['rounds']) - 1} round(s), judged on val {rep['metric']}):"]
    for r in rep["rounds"]:
        if r.get("round") == 0:
            lines.append(f"  round 0: findings {', '.join(r['findings']) or 'none'}; val {_num(r.get('val'))}"
                         + (f"; {_metrics_line(r)}" if r.get("metrics") else ""))
        elif "note" in r:
            lines.append(f"  round {r['round']}: {r['note']}")
        elif "error" in r:
            lines.append(f"  round {r['round']}: {r['finding']} → {r['fix']['say']}: failed ({r['error']})")
        else:
            lines.append(f"  round {r['round']}: {r['finding']} → {r['fix']['say']} ({_sets(r['fix']['patch'])}): "
                         f"{'kept' if r['accepted'] else 'reverted'}; findings "
                         f"{', '.join(r['findings']) or 'none'}; val {_num(r.get('val'))}"
                         + (f"; {_metrics_line(r)}" if r.get("metrics") else ""))
    verdict = "healthy" if rep["healthy"] else f"still: {', '.join(rep['findings'])}"
    lines.append(f"  result: {verdict}; val {_num(rep['rounds'][0].get('val'))} → {_num(rep['final_val'])}; "
                 f"overrides: {_sets(rep['overrides']) or 'none'}")
    return "\n".join(lines)


def repair_after_run(trainer: Any, findings: list[Finding], echo: Any = print) -> dict[str, Any]:
    """``doctor.auto_fix: true``: repair right after the run (judged against the run's model as
    it ends); rounds go to RUN_DIR/repair/, the report to RUN_DIR/repair.json."""
    from liandan.training.rundir import write_json

    run_dir = Path(trainer.dir)
    start = judge_metrics(trainer.model, trainer.data, trainer.info, trainer.recipe)
    rep = repair(trainer.recipe, rounds=trainer.recipe.doctor.max_rounds, out=run_dir / "repair",
                 baseline=(run_dir, findings, start), echo=echo)
    write_json(run_dir / "repair.json", rep)
    echo(format_report(rep))
    return rep
