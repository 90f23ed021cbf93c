"""The doctor benchmark: faulty and healthy recipes with the codes the doctor must report.

Cases live in this package as YAML files, one per problem (``<code>.yaml``) plus
``healthy.yaml``; each is a list of ``{name, expect: [codes], allow: [codes], quick: bool,
inject: ..., recipe: {...}}``. ``expect`` is what must be found (recall); a finding is correct
(precision) when its code is in ``expect`` or ``allow`` — ``allow`` lists genuine co-symptoms
(a blow-up both explodes and goes NaN). Healthy cases expect nothing: any finding is a false
alarm. ``inject`` plants faults no recipe key can express (``softmax_head``: the model ends in
a Softmax). Repair success: the ``--fix`` loop ends healthy with a better validation metric.
Like AutoTrainer's evaluation (detection, false positives, repaired share), on our own cases.

``quick: true`` marks the subset the test suite runs (at the recipes' seeds and shifted by one).
A quick case must keep its verdict with a margin of at least 2× — the deciding statistic at
least twice (or half) its rule's threshold, see :mod:`liandan.doctor.bench.margins` — over seed
offsets 0-2 × 1 and 2 torch threads (``python bench/doctor_margins.py``): a case near a threshold
flips on another machine. Such cases stay in the full bench, which measures the doctor; the
quick set tests it. ``run_seeds`` (``liandan doctor bench --seeds 0,1,2``) shifts every seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from liandan.errors import LiandanError

BASE = {"train.tensorboard": False, "train.threads": 1, "report": False}


@dataclass
class Case:
    name: str
    group: str
    recipe: dict[str, Any]
    expect: list[str] = field(default_factory=list)
    allow: list[str] = field(default_factory=list)
    inject: str | None = None
    quick: bool = False

    @property
    def healthy(self) -> bool:
        return not self.expect


def load_cases(names: list[str] | None = None, quick: bool = False) -> list[Case]:
    """All cases (``quick``: the marked subset; ``names``: by case name, group or code)."""
    cases = []
    root = resources.files("liandan.doctor.bench")
    for f in sorted(root.iterdir(), key=lambda p: p.name):
        if f.name.endswith(".yaml"):
            cases += parse_cases(f.read_text(), f.name[:-5])
    if names:
        wanted = set(names)
        picked = [c for c in cases if c.name in wanted or c.group in wanted]
        unknown = wanted - {c.name for c in picked} - {c.group for c in picked}
        if unknown:
            raise LiandanError(
                f"unknown bench case(s) {', '.join(sorted(unknown))}; cases: {', '.join(c.name for c in cases)}"
            )
        return picked
    return [c for c in cases if c.quick] if quick else cases


def parse_cases(text: str, group: str) -> list[Case]:
    """The cases of one YAML file (a list of ``{name, expect, allow, quick, inject, recipe}``)."""
    return [Case(d["name"], group, d["recipe"], list(d.get("expect", [])), list(d.get("allow", [])),
                 d.get("inject"), bool(d.get("quick", False))) for d in yaml.safe_load(text) or []]


def injector(kind: str | None):
    """A factory of callbacks that plant a fault at fit start (None when nothing to inject)."""
    if not kind:
        return None
    from torch import nn

    from liandan.training.callbacks import Callback

    class Inject(Callback):
        def on_fit_start(self, trainer: Any) -> None:
            if kind == "softmax_head":  # the classic: softmax in the model, then cross_entropy again
                attr = "net" if hasattr(trainer, "net") else "model"  # the module the loop calls
                setattr(trainer, attr, nn.Sequential(getattr(trainer, attr), nn.Softmax(dim=-1)))
            else:
                raise LiandanError(f"unknown bench injection {kind!r}")

    return lambda: [Inject()]


def case_overrides(case: Case, seed_offset: int = 0, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The bench's overrides for ``case``: :data:`BASE`, the recipe's seed shifted by ``seed_offset``
    (a different split, init and data order: the same fault must still show), then ``overrides``."""
    ov = dict(BASE)
    if seed_offset:
        ov["seed"] = int(case.recipe.get("seed", 0)) + seed_offset
    return {**ov, **(overrides or {})}


def run_case(case: Case, root: Path, repair: bool = True, rounds: int = 3, memory: Any = None,
             seed_offset: int = 0, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from liandan.doctor.repair import repair as do_repair
    from liandan.runs import DOCTOR, read_json
    from liandan.training.api import train

    t0 = time.perf_counter()
    cbs = injector(case.inject)
    out = root / case.name
    ov = case_overrides(case, seed_offset, overrides)
    run = train(case.recipe, overrides=dict(ov), out=out / "round-0", callbacks=cbs() if cbs else None, quiet=True)
    doc = read_json(run.dir / DOCTOR)
    found = [f["code"] for f in doc["findings"]]
    ok_codes = set(case.expect) | set(case.allow)
    res: dict[str, Any] = {
        "name": case.name,
        "group": case.group,
        "expect": case.expect,
        "found": found,
        "missed": [c for c in case.expect if c not in found],
        "wrong": [c for c in found if c not in ok_codes],
        "status": run.status,
    }
    res["detected"] = not res["missed"] and not res["wrong"]
    if repair and not case.healthy:
        from liandan.doctor.findings import Finding
        from liandan.doctor.judge import judge_metrics

        rep = do_repair(
            case.recipe,
            dict(ov),
            rounds=rounds,
            out=out,
            memory=memory,
            baseline=(run.dir, [Finding.from_dict(f) for f in doc["findings"]],
                      judge_metrics(run.model, run.data, run.info)),
            callbacks=cbs,
        )
        res["repair"] = {
            "success": rep["success"],
            "healthy": rep["healthy"],
            "improved": rep["improved"],
            "rounds": len(rep["rounds"]) - 1,
            "overrides": rep["overrides"],
            "val_before": rep["rounds"][0].get("val"),
            "val_after": rep["final_val"],
            "still": rep["findings"],
            "steps": [{k: r.get(k) for k in ("finding", "fix", "findings", "val", "gone", "improved", "accepted",
                                             "error", "note") if k in r} for r in rep["rounds"][1:]],
        }
    res["wall_s"] = round(time.perf_counter() - t0, 2)
    return res


def score(results: list[dict[str, Any]], cases: list[Case]) -> dict[str, Any]:
    by = {c.name: c for c in cases}
    faulty = [r for r in results if not by[r["name"]].healthy]
    healthy = [r for r in results if by[r["name"]].healthy]
    expected = sum(len(by[r["name"]].expect) for r in faulty)
    hits = sum(len(by[r["name"]].expect) - len(r["missed"]) for r in faulty)
    n_found = sum(len(r["found"]) for r in results)
    wrong = sum(len(r["wrong"]) for r in results)
    rep = [r["repair"]["success"] for r in faulty if "repair" in r]
    return {
        "cases": len(results),
        "faulty": len(faulty),
        "healthy": len(healthy),
        "recall": hits / expected if expected else None,
        "precision": (n_found - wrong) / n_found if n_found else None,
        "false_alarm_rate": sum(bool(r["found"]) for r in healthy) / len(healthy) if healthy else None,
        "repair_success": sum(rep) / len(rep) if rep else None,
        "codes": sorted({c for r in faulty for c in by[r["name"]].expect}),
    }


def run_bench(
    names: list[str] | None = None,
    *,
    quick: bool = False,
    repair: bool = True,
    rounds: int = 3,
    memory: str | Path | None = None,
    out: str | Path | None = None,
    echo: Any = None,
    jobs: int = 1,
    seed_offset: int = 0,
) -> dict[str, Any]:
    """Run the cases; returns ``{"results": [...], "recall", "precision", "false_alarm_rate",
    "repair_success", "wall_s", ...}``. A fresh memory store is used unless ``memory`` is given,
    so results do not depend on past runs. ``jobs`` > 1 runs cases in that many processes (one
    torch thread each); the shared memory store then sees outcomes in a less fixed order.
    ``seed_offset`` shifts every recipe's seed (see :func:`run_seeds` for several)."""
    import tempfile

    import torch

    from liandan.doctor.memory import Memory

    cases = load_cases(names, quick)
    if not cases:
        raise LiandanError("no bench cases selected")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="liandan-bench-") as tmp:
        root = Path(out) if out else Path(tmp)
        mem = Memory(memory or Path(tmp) / "memory.db")
        results = []
        try:
            if jobs > 1:
                results = _parallel(cases, root, repair, rounds, mem.path, jobs, echo, seed_offset)
            else:
                for c in cases:
                    r = run_case(c, root, repair, rounds, mem, seed_offset)
                    results.append(r)
                    if echo:
                        echo(format_result(r))
        finally:
            torch.set_num_threads(threads)
    return {"results": results, **score(results, cases), "seed_offset": seed_offset,
            "wall_s": round(time.perf_counter() - t0, 1)}


SCORES = ("recall", "precision", "false_alarm_rate", "repair_success")


def run_seeds(names: list[str] | None = None, *, seeds: list[int], out: str | Path | None = None,
              echo: Any = None, **kw: Any) -> dict[str, Any]:
    """:func:`run_bench` once per seed offset in ``seeds`` (each with a fresh memory store unless
    ``memory`` is given; runs under ``out``/seed<offset>); returns ``{"offsets", "seeds": [per-seed
    documents], "scores": {score: {"mean", "sd", "min", "max"}}, "wall_s"}``."""
    import statistics

    t0 = time.perf_counter()
    docs = []
    for k in seeds:
        if echo:
            echo(f"# seed offset {k}")
        doc = run_bench(names, out=Path(out) / f"seed{k}" if out else None, echo=echo, seed_offset=k, **kw)
        docs.append(doc)
        if echo:
            echo(format_summary(doc))
    scores: dict[str, Any] = {}
    for key in SCORES:
        xs = [d[key] for d in docs if d.get(key) is not None]
        scores[key] = {"mean": statistics.fmean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0,
                       "min": min(xs), "max": max(xs)} if xs else None
    return {"offsets": list(seeds), "seeds": docs, "scores": scores, "wall_s": round(time.perf_counter() - t0, 1)}


def format_seeds(doc: dict[str, Any]) -> str:
    def f(key: str) -> str:
        s = doc["scores"][key]
        return "n/a" if s is None else f"{s['mean']:.3f} ± {s['sd']:.3f} [{s['min']:.3f}–{s['max']:.3f}]"

    return (f"seed offsets {','.join(map(str, doc['offsets']))} (mean ± sd [min–max]): recall {f('recall')}  "
            f"precision {f('precision')}  false_alarm_rate {f('false_alarm_rate')}  "
            f"repair_success {f('repair_success')}  wall {doc['wall_s']:.0f}s")


def _worker(args: tuple) -> dict[str, Any]:
    import torch

    from liandan.doctor.memory import Memory

    case, root, repair, rounds, mem_path, seed_offset = args
    torch.set_num_threads(1)
    return run_case(case, root, repair, rounds, Memory(mem_path), seed_offset)


def _parallel(
    cases: list[Case], root: Path, repair: bool, rounds: int, mem_path: Path, jobs: int, echo: Any,
    seed_offset: int = 0,
) -> list[dict[str, Any]]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # longest first, so the long overfitting cases do not end up alone at the tail
    order = sorted(cases, key=lambda c: -int(c.recipe.get("train", {}).get("epochs", 20)))
    done: dict[str, dict[str, Any]] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("fork")) as ex:
        for r in ex.map(_worker, [(c, root, repair, rounds, mem_path, seed_offset) for c in order]):
            done[r["name"]] = r
            if echo:
                echo(format_result(r))
    return [done[c.name] for c in cases]


def format_result(r: dict[str, Any]) -> str:
    mark = "ok " if r["detected"] else "BAD"
    line = f"{mark} {r['name']:<34} expect {','.join(r['expect']) or '-':<40} found {','.join(r['found']) or '-'}"
    if "repair" in r:
        rp = r["repair"]
        line += f"  | repair {'ok' if rp['success'] else 'FAIL'} ({rp['rounds']} rounds)"
    return line + f"  {r['wall_s']:.1f}s"


def format_summary(doc: dict[str, Any]) -> str:
    f = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    return (
        f"cases {doc['cases']} (faulty {doc['faulty']}, healthy {doc['healthy']})  recall {f(doc['recall'])}  "
        f"precision {f(doc['precision'])}  false_alarm_rate {f(doc['false_alarm_rate'])}  "
        f"repair_success {f(doc['repair_success'])}  wall {doc['wall_s']:.0f}s"
    )
