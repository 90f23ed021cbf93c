"""Repair: the doctor as an agent — perceive (probes), decide (rules), act (apply the top fix's
patch as recipe overrides and retrain), judge (is the finding gone and the validation metric
better?), for up to N rounds, remembering outcomes (:mod:`liandan.doctor.memory`).

After AutoTrainer (Zhang et al. ICSE 2021, ``modules.py: solve``): each candidate fix is a full
retrain; a fix that does not remove the finding or does not improve the metric is reverted and
the next-ranked fix is tried; a new finding after an accepted fix is chased in the next round.
Departure from DESIGN.md's "retrains from the last good checkpoint": most patches change the
architecture, the init or the data pipeline, so every round retrains from scratch.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from liandan.doctor.findings import Finding, Fix, format_finding
from liandan.recipe import Recipe, load_recipe

TOL_WORSE, MIN_GAIN, LOSS_GAIN = 0.01, 0.005, 0.02


def val_metrics(summary: dict[str, Any], task: str) -> dict[str, float | None]:
    """The validation metric a repair is judged on: accuracy (classification) or R², plus the loss."""
    val = (summary.get("final") or {}).get("val") or {}
    key = "accuracy" if task == "classify" else "r2"
    m, lo = val.get(key), val.get("loss")
    ok = lambda x: x if isinstance(x, (int, float)) and math.isfinite(x) else None  # noqa: E731
    return {"metric": ok(m), "loss": ok(lo), "name": key}


def improved(new: dict[str, Any], old: dict[str, Any], same_loss: bool) -> bool:
    """Better on the validation metric; on a tie (±MIN_GAIN), a ≥ 2 % lower validation loss
    counts when both runs use the same loss function."""
    if old["metric"] is None:
        return new["metric"] is not None
    if new["metric"] is None:
        return False
    gain = new["metric"] - old["metric"]
    if gain > MIN_GAIN:
        return True
    if gain < -TOL_WORSE:
        return False
    return bool(same_loss and new["loss"] is not None and old["loss"] is not None
                and new["loss"] < (1 - LOSS_GAIN) * old["loss"])


class Round(dict):
    """One round of the report (a dict, so it serialises as is)."""


def _train(recipe: Recipe, overrides: dict[str, Any], out: Path, callbacks: Any, quiet: bool) -> tuple[Any, list]:
    import liandan
    from liandan.doctor.findings import Finding as F
    from liandan.train.rundir import read_json

    ov = {**overrides, "doctor.auto_fix": False, "doctor.enabled": True}
    run = liandan.train(recipe, overrides=ov, out=out, callbacks=callbacks() if callbacks else None, quiet=quiet)
    doc = read_json(run.dir / "doctor.json") if (run.dir / "doctor.json").exists() else {"findings": []}
    return run, [F.from_dict(d) for d in doc["findings"]]


def repair(recipe: str | Path | dict | Recipe, overrides: list[str] | dict | None = None, *, rounds: int | None = None,
           out: str | Path | None = None, memory: Any = None,
           baseline: tuple[Path, list[Finding], dict[str, Any]] | None = None,
           callbacks: Any = None, echo: Any = None, quiet: bool = True) -> dict[str, Any]:
    """Diagnose ``recipe`` and repair it for up to ``rounds`` rounds; returns the report.

    ``baseline`` = (run_dir, findings, summary) of an already trained run (skips round 0's training);
    ``callbacks`` is a factory of extra training callbacks (the bench injects faults with it);
    ``memory`` a :class:`~liandan.doctor.memory.Memory`, a path, or None for the default store.
    """
    from liandan.doctor.memory import Memory, signature
    from liandan.train.rundir import read_json

    say = echo or (lambda _m: None)
    base = load_recipe(recipe, overrides)
    n_rounds = rounds or base.doctor.max_rounds
    mem = memory if isinstance(memory, Memory) else Memory(memory or base.doctor.memory)
    root = Path(out) if out else Path(tempfile.mkdtemp(prefix="liandan-repair-"))
    sig = signature(base)
    if baseline is None:
        run, findings = _train(base, {}, root / "round-0", callbacks, quiet)
        run_dir, summary, task = run.dir, run.summary, run.info.task
    else:
        run_dir, findings, summary = baseline
        task = read_json(Path(run_dir) / "data.json")["task"]
    for f in findings:
        mem.record_finding(sig, f)
    start = val_metrics(summary, task)
    report: dict[str, Any] = {"recipe": base.name, "metric": start["name"], "rounds": [Round(
        round=0, dir=str(run_dir), findings=[f.code for f in findings], val=start["metric"], val_loss=start["loss"])]}
    accepted: dict[str, Any] = {}
    current, cur_metrics, tried = findings, start, set()
    for r in range(1, n_rounds + 1):
        if not current:
            break
        target, fix = _next_fix(current, mem, sig, tried)
        if fix is None:
            report["rounds"].append(Round(round=r, note="no untried fix with a recipe patch left"))
            break
        tried.add((target.code, repr(sorted(fix.patch.items()))))
        say(f"repair round {r}: {target.code} → {fix.say} ({_sets(fix.patch)})")
        patch = {**accepted, **fix.patch}
        try:
            run, found = _train(base, patch, root / f"round-{r}", callbacks, quiet)
        except Exception as e:  # a patch can make the recipe untrainable: count it as a failed fix
            mem.record_attempt(sig, target.code, fix, gone=False, improved=False, before=cur_metrics["metric"],
                               after=None)
            report["rounds"].append(Round(round=r, finding=target.code, fix=fix.to_dict(), error=str(e)[:200],
                                          accepted=False))
            continue
        m = val_metrics(run.summary, task)
        same_loss = "loss.name" not in fix.patch and "task" not in fix.patch
        gone = target.code not in {f.code for f in found}
        better = improved(m, cur_metrics, same_loss)
        mem.record_attempt(sig, target.code, fix, gone=gone, improved=better, before=cur_metrics["metric"],
                           after=m["metric"])
        ok = gone and better
        report["rounds"].append(Round(round=r, finding=target.code, fix=fix.to_dict(), dir=str(run.dir),
                                      findings=[f.code for f in found], val=m["metric"], val_loss=m["loss"],
                                      gone=gone, improved=better, accepted=ok))
        say(f"  → {'accepted' if ok else 'reverted'}: {target.code} {'gone' if gone else 'still there'}, "
            f"val {start['name']} {_num(cur_metrics['metric'])} → {_num(m['metric'])}"
            + (f"; now: {', '.join(f.code for f in found)}" if found and ok else ""))
        if ok:
            accepted, current, cur_metrics = patch, found, m
            for f in found:
                if f.code != target.code:
                    say(format_finding(f))
    same = "loss.name" not in accepted and "task" not in accepted
    report.update(overrides=accepted, healthy=not current, final_val=cur_metrics["metric"],
                  improved=bool(accepted) and improved(cur_metrics, start, same), findings=[f.code for f in current])
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


def format_report(rep: dict[str, Any]) -> str:
    lines = [f"repair of {rep['recipe']} ({len(rep['rounds']) - 1} round(s), judged on val {rep['metric']}):"]
    for r in rep["rounds"]:
        if r.get("round") == 0:
            lines.append(f"  round 0: findings {', '.join(r['findings']) or 'none'}; val {_num(r.get('val'))}")
        elif "note" in r:
            lines.append(f"  round {r['round']}: {r['note']}")
        elif "error" in r:
            lines.append(f"  round {r['round']}: {r['finding']} → {r['fix']['say']}: failed ({r['error']})")
        else:
            lines.append(f"  round {r['round']}: {r['finding']} → {r['fix']['say']} ({_sets(r['fix']['patch'])}): "
                         f"{'accepted' if r['accepted'] else 'reverted'}; findings "
                         f"{', '.join(r['findings']) or 'none'}; val {_num(r.get('val'))}")
    verdict = "healthy" if rep["healthy"] else f"still: {', '.join(rep['findings'])}"
    lines.append(f"  result: {verdict}; val {_num(rep['rounds'][0].get('val'))} → {_num(rep['final_val'])}; "
                 f"overrides: {_sets(rep['overrides']) or 'none'}")
    return "\n".join(lines)


def repair_after_run(run_dir: Path, recipe: Recipe, findings: list[Finding], last_val: dict[str, float] | None,
                     echo: Any = print) -> dict[str, Any]:
    """``doctor.auto_fix: true``: repair right after the run (judged against its last epoch's
    validation metrics, as summary.json is not final yet); rounds go to RUN_DIR/repair/."""
    from liandan.train.rundir import write_json

    rep = repair(recipe, rounds=recipe.doctor.max_rounds, out=Path(run_dir) / "repair",
                 baseline=(Path(run_dir), findings, {"final": {"val": last_val or {}}}), echo=echo)
    write_json(Path(run_dir) / "repair.json", rep)
    echo(format_report(rep))
    return rep
