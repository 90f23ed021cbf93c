"""How far is each doctor bench case from flipping its verdict?

A test that passes because a trajectory lands on one side of a rule's threshold by a hair fails
on the next machine. This script trains each case (default: the quick subset the tests use)
under several settings — the recipe's seed plus offsets × torch thread counts (the bench uses
one thread; a seed changes split, init and data order, threads change float summation order and,
with the wall clock, where the adaptive probes land) — and, for every rule, reads the statistic it
compares and its threshold (``signal(view)`` of each rule module, see
``liandan/doctor/rules/_signal.py``). The verdict margin (``liandan/doctor/bench/margins.py``)
is how far the case's verdict is from flipping, as a factor: 2× means the deciding signal is
twice (or half) its threshold — in odds for fractions (dead/saturated share, quality, loss drop),
in plain ratio for magnitudes (update ratio, gradient growth, loss ratios). For a faulty case it
is the smaller of the expected rule's margin (and its suppressors') and that of the closest rule
that would add a wrong finding; for a healthy case, the rule closest to a false alarm.

A quick case is kept when its verdict holds on every setting with margin ≥ 2× (``--clear``).

    python bench/doctor_margins.py [--cases a,b | --all] [--seeds 0,1,2] [--threads 1,2]
        [--probe-every auto,3] [--clear 2] [--json out.json] [--file candidates.yaml]

Table: one row per case — expected codes, per setting the verdict (ok/NO) and margin, the
smallest margin over the settings with the rule, role and check that set it. Then one row per
rule (``--no-rules`` skips it): where its threshold sits between the runs it must catch and the
runs it must not — the distribution (min / median / max) of its main statistic (the first
measured comparison of its signal; ``flag``-only rules show n/a) and of its margin on the faulty
runs that expect it and on the healthy runs, with the threshold, and the separation: the
smallest faulty margin and the largest healthy one (a rule separates its cases when the first is
> 0 > the second). Last line: ``N/M cases keep their verdict on all K settings with margin ≥ 2×,
min margin X``.
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

os.environ.setdefault("LIANDAN_DOCTOR_STRICT", "1")  # a rule error must show, not silence the rule


def run(case: Any, root: Path, seed: int, threads: int, every: int | None) -> dict[str, Any]:
    from liandan.doctor.bench import run_case
    from liandan.doctor.bench.margins import rule_signals, verdict
    from liandan.doctor.engine import run_rules
    from liandan.doctor.view import view_from_run_dir
    from liandan.registry import RULES

    ov: dict[str, Any] = {"train.threads": threads}
    if every:
        ov["doctor.probe_every"] = every
    out = root / f"s{seed}-t{threads}-p{every or 'auto'}"
    res = run_case(case, out, repair=False, seed_offset=seed, overrides=ov)
    view = view_from_run_dir(out / case.name / "round-0")
    sigs = rule_signals(view)
    v = verdict(case, sigs, view)
    # the signals must be the rules' own gates, and the post hoc view the live one
    gate = [c for c, s in sigs.items() if s.fires != (RULES.get(c).fn(view) is not None)]
    posthoc = sorted(f.code for f in run_rules(view))
    v.update(live=sorted(res["found"]), detected=res["detected"], gate_mismatch=gate,
             posthoc_mismatch=posthoc != sorted(res["found"]) or posthoc != v["found"],
             signals={c: s.to_dict() for c, s in sigs.items()})
    return v


def main_check(sig: dict[str, Any]) -> dict[str, Any] | None:
    """The first comparison with a measured value in a signal tree (depth first): the rule's main statistic."""
    if sig.get("value") is not None:
        return sig
    for p in sig.get("parts", []):
        found = main_check(p)
        if found is not None:
            return found
    return None


def _dist(xs: list[float]) -> str:
    import statistics

    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return f"{'n/a':>26}"
    return f"{min(xs):>8.3g} {statistics.median(xs):>8.3g} {max(xs):>8.3g}"


def _values(sigs: list[dict[str, Any]], name: str) -> list[float]:
    cs = [main_check(s) for s in sigs]
    return [c["value"] for c in cs if c is not None and c["name"] == name]


def rule_table(rows: list[dict[str, Any]]) -> list[str]:
    """Per rule: its main statistic and margin on the faulty runs that expect it vs the healthy runs."""
    codes = sorted({c for r in rows for v in r["settings"] for c in v["signals"]})
    out = [f"{'rule':<24} {'main check':<26} {'threshold':>9}  {'faulty n':>8} {'min':>8} {'median':>8} {'max':>8}  "
           f"{'healthy n':>9} {'min':>8} {'median':>8} {'max':>8}  separation (faulty min / healthy max margin)"]
    for code in codes:
        groups: dict[str, list[dict[str, Any]]] = {"faulty": [], "healthy": []}
        for r in rows:
            kind = "faulty" if code in r["expect"] else "healthy" if r["healthy"] else None
            if kind:
                groups[kind] += [v["signals"][code] for v in r["settings"] if code in v["signals"]]
        checks = [main_check(s) for s in groups["faulty"] + groups["healthy"]]
        first = next((c for c in checks if c is not None), None)
        name, thr = (first["name"], first["threshold"]) if first else ("(flags only)", None)

        fm = [s["margin"] for s in groups["faulty"]]
        hm = [s["margin"] for s in groups["healthy"]]
        sep_f = signed(min(fm)) if fm else "n/a"
        sep_h = signed(max(hm)) if hm else "n/a"
        ok = (min(fm) > 0 if fm else True) and (max(hm) < 0 if hm else True)
        fv, hv = _dist(_values(groups["faulty"], name)), _dist(_values(groups["healthy"], name))
        out.append(f"{code:<24} {name:<26} {'' if thr is None else f'{thr:.3g}':>9}  {len(groups['faulty']):>8} "
                   f"{fv}  {len(groups['healthy']):>9} {hv}  {sep_f} / {sep_h}{'' if ok else '  <-- overlap'}")
    return out


def fmt_margin(v: dict[str, Any]) -> str:
    from liandan.doctor.bench.margins import factor

    return f"{'ok' if v['ok'] else 'NO'} {factor(v['margin'])}"


def who(v: dict[str, Any]) -> str:
    """"lr_too_high expected", "dead_relu wrong", "lr_too_high expected, unless dead_relu"..."""
    if v["by"] == v["code"]:
        return f"{v['code']} {v['role']}"
    return f"{v['code']} {v['role']}, {'unless' if v['role'] == 'expected' else 'hidden by'} {v['by']}"


def signed(margin: float) -> str:
    from liandan.doctor.bench.margins import factor

    return ("-" if margin < 0 else "") + factor(margin)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", help="comma-separated case names, groups or codes (default: the quick subset)")
    ap.add_argument("--all", action="store_true", help="every bench case")
    ap.add_argument("--file", help="cases from this YAML file instead (the bench's format): try a candidate case")
    ap.add_argument("--seeds", default="0,1,2", help="seed offsets added to each recipe's seed")
    ap.add_argument("--threads", default="1,2", help="torch thread counts")
    ap.add_argument("--probe-every", default="auto", help="doctor.probe_every values ('auto': adaptive, as the bench)")
    ap.add_argument("--clear", type=float, default=2.0, help="the margin factor a kept quick case needs")
    ap.add_argument("--json", help="write every setting's verdict and signals here")
    ap.add_argument("--no-rules", action="store_true", help="skip the per-rule threshold table")
    args = ap.parse_args()

    import torch

    from liandan.doctor.bench import load_cases, parse_cases

    names = [c.strip() for c in args.cases.split(",")] if args.cases else None
    if args.file:
        cases = parse_cases(Path(args.file).read_text(), Path(args.file).stem)
        cases = [c for c in cases if not names or c.name in names]
    else:
        cases = load_cases(names, quick=not (names or args.all))
    seeds = [int(s) for s in args.seeds.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    everies = [None if p == "auto" else int(p) for p in args.probe_every.split(",")]
    settings = [(s, t, p) for p in everies for s in seeds for t in threads]
    need = math.log2(args.clear)
    t0 = time.perf_counter()
    head = [f"s+{s}/t{t}" + (f"/p{p}" if len(everies) > 1 else "") for s, t, p in settings]
    print(f"{'case':<32} {'expect':<22} " + " ".join(f"{h:>10}" for h in head)
          + "   min margin  (rule: check value/threshold)")
    rows, problems = [], []
    with tempfile.TemporaryDirectory(prefix="doctor-margins-") as tmp:
        for case in cases:
            vs = []
            for s, t, p in settings:
                v = run(case, Path(tmp), s, t, p)
                torch.set_num_threads(1)
                vs.append(v)
                if v["gate_mismatch"] or v["posthoc_mismatch"] or v["ok"] != v["detected"]:
                    problems.append(f"{case.name} s+{s}/t{t}/p{p or 'auto'}: live {v['live']} posthoc/signals "
                                    f"{v['found']} gate mismatch {v['gate_mismatch']}")
            worst = min(vs, key=lambda v: v["margin"])  # signed: < 0 where the verdict flipped
            keep = all(v["ok"] and v["margin"] >= need for v in vs)
            all_ok = all(v["ok"] for v in vs)
            rows.append({"case": case.name, "expect": case.expect, "healthy": case.healthy, "settings": vs,
                         "keep": keep, "min_margin": worst["margin"], "all_ok": all_ok})
            val = "" if worst["value"] is None else f" {worst['value']:.4g}/{worst['threshold']:.4g}"
            mark = "" if keep else "  <-- edge" if all_ok else "  <-- FLIPS"
            print(f"{case.name:<32} {','.join(case.expect) or '(healthy)':<22} "
                  + " ".join(f"{fmt_margin(v):>10}" for v in vs)
                  + f"   {signed(worst['margin']):>8}  ({who(worst)}: {worst['check']}{val}){mark}",
                  flush=True)
    n_keep = sum(r["keep"] for r in rows)
    n_ok = sum(r["all_ok"] for r in rows)
    m = min(r["min_margin"] for r in rows)
    if not args.no_rules:
        print()
        for line in rule_table(rows):
            print(line)
        print()
    for p in problems:
        print("warning:", p)
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": head, "clear": args.clear, "rows": rows}, indent=1,
                                              default=str))
    print(f"{n_ok}/{len(rows)} cases keep their verdict on all {len(settings)} settings, {n_keep}/{len(rows)} with "
          f"margin ≥ {args.clear:g}×; min margin {signed(m)} "
          f"({time.perf_counter() - t0:.0f} s)")
    return 0 if n_keep == len(rows) and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
