"""The doctor benchmark: faulty and healthy recipes with the codes the doctor must report.

Cases live in this package as YAML files, one per problem (``<code>.yaml``) plus
``healthy.yaml``; each is a list of ``{name, expect: [codes], allow: [codes], quick: bool,
inject: ..., recipe: {...}}``. ``expect`` is what must be found (recall); a finding is correct
(precision) when its code is in ``expect`` or ``allow`` — ``allow`` lists genuine co-symptoms
(a blow-up both explodes and goes NaN). Healthy cases expect nothing: any finding is a false
alarm. An output activation the loss does not expect is the recipe key ``model.output``
(``softmax``, ``sigmoid``, ``relu``), so the doctor's fix can remove it; ``inject`` (a head planted
by a callback) remains for faults no recipe key expresses. Repair success: the ``--fix`` loop
ends healthy with a better validation metric.
Like AutoTrainer's evaluation (detection, false positives, repaired share), on our own cases.

``quick: true`` marks the subset the test suite runs (at the recipes' seeds and shifted by one).
A quick case must keep its verdict with a margin of at least 2× — the deciding statistic at
least twice (or half) its rule's threshold, see :mod:`liandan.doctor.bench.margins` — over seed
offsets 0-2 × 1 and 2 torch threads (``python bench/doctor_margins.py``): a case near a threshold
flips on another machine. Such cases stay in the full bench, which measures the doctor; the
quick set tests it. ``run_seeds`` (``liandan doctor bench --seeds 0,1,2``) shifts every seed.

Generalisation (``real_*.yaml``): cases transcribed from reported training failures (Stack
Overflow questions and GitHub issues collected by DeepLocalize/DeepDiagnosis, DeepFD,
TheDeepChecker, AutoTrainer, and issue threads), each with ``source`` (what it transcribes),
``fix`` (the patch the source's answer applied, as recipe overrides, e.g. ``model.output:
logits``) and ``split``: ``dev`` or ``heldout``, fixed by a hash of the case name
(:func:`split_of`) and written into the files *before* anything was run, so rules are tuned on
``dev`` only and ``heldout`` measures generalisation (``--split heldout``). Cases written before
the split existed carry no ``split``: the rules were tuned on them, so they are ``dev``.
``pretrain`` (a recipe) makes a fine-tuning case: it is trained first and the case starts from it
(``model.from_run``). ``bench/doctor_case_check.py`` checks that every faulty case shows its
fault in the metrics against its fixed counterpart (and every healthy one learns).
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from liandan.errors import LiandanError

BASE = {"train.tensorboard": False, "train.threads": 1, "report": False}
SPLITS = ("dev", "heldout")


@dataclass
class Case:
    name: str
    group: str
    recipe: dict[str, Any]
    expect: list[str] = field(default_factory=list)
    allow: list[str] = field(default_factory=list)
    inject: str | None = None
    quick: bool = False
    split: str = "dev"
    source: str | None = None
    fix: dict[str, Any] | None = None
    pretrain: dict[str, Any] | None = None

    @property
    def healthy(self) -> bool:
        return not self.expect


def split_of(name: str) -> str:
    """The pre-registered split of a case: the parity of the first 32 bits of sha256(name) —
    fixed by the name alone, before (and whatever) any run shows."""
    return SPLITS[int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 2]


def load_cases(names: list[str] | None = None, quick: bool = False, split: str | None = None) -> list[Case]:
    """All cases (``quick``: the marked subset; ``names``: case names, groups or codes, or
    shell patterns of them such as ``real_*``; ``split``: ``dev`` or ``heldout`` only)."""
    if split is not None and split not in SPLITS:
        raise LiandanError(f"unknown bench split {split!r}; splits: {', '.join(SPLITS)}")
    cases = []
    root = resources.files("liandan.doctor.bench")
    for f in sorted(root.iterdir(), key=lambda p: p.name):
        if f.name.endswith(".yaml"):
            cases += parse_cases(f.read_text(), f.name[:-5])
    if names:
        hit = lambda c, w: fnmatch.fnmatchcase(c.name, w) or fnmatch.fnmatchcase(c.group, w) or w in c.expect  # noqa: E731
        picked = [c for c in cases if any(hit(c, w) for w in names)]
        unknown = [w for w in names if not any(hit(c, w) for c in cases)]
        if unknown:
            raise LiandanError(
                f"unknown bench case(s) {', '.join(sorted(unknown))}; cases: {', '.join(c.name for c in cases)}"
            )
        cases = picked
    elif quick:
        cases = [c for c in cases if c.quick]
    return [c for c in cases if split is None or c.split == split]


def parse_cases(text: str, group: str) -> list[Case]:
    """The cases of one YAML file (a list of ``{name, expect, allow, quick, inject, recipe, split,
    source, fix, pretrain}``)."""
    out = []
    for d in yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or []:  # C parser: 10× faster
        split = d.get("split", "dev")
        if split not in SPLITS:
            raise LiandanError(f"bench case {d.get('name')!r}: split {split!r} is not one of {', '.join(SPLITS)}")
        out.append(Case(d["name"], group, d["recipe"], list(d.get("expect", [])), list(d.get("allow", [])),
                        d.get("inject"), bool(d.get("quick", False)), split, d.get("source"), d.get("fix"),
                        d.get("pretrain")))
    return out


def injector(kind: str | None):
    """A factory of callbacks that plant a fault in the model (None when nothing to inject).

    ``<act>_head`` plants :mod:`liandan.models.output`'s activation when the trainer is built
    (``setup``, before the first forward) — the same hook ``model.output: <act>`` puts there, so
    every consumer sees the fault (loop, validation, final evaluation, ``run.model``, the judge) —
    but from a callback, where no recipe key may express the fault.
    """
    if not kind:
        return None
    from liandan.models.output import OUTPUTS, apply_output
    from liandan.training.callbacks import Callback

    act = kind.removesuffix("_head")
    if not kind.endswith("_head") or act not in OUTPUTS:
        raise LiandanError(f"unknown bench injection {kind!r}; injections: {', '.join(f'{k}_head' for k in OUTPUTS)}")

    class Inject(Callback):
        def setup(self, trainer: Any) -> None:
            apply_output(trainer.model, act)

    return lambda: [Inject()]


def case_overrides(case: Case, seed_offset: int = 0, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The bench's overrides for ``case``: :data:`BASE`, the recipe's seed shifted by ``seed_offset``
    (a different split, init and data order: the same fault must still show), then ``overrides``."""
    ov = dict(BASE)
    if seed_offset:
        ov["seed"] = int(case.recipe.get("seed", 0)) + seed_offset
    return {**ov, **(overrides or {})}


def case_recipe(case: Case, out: Path, ov: dict[str, Any]) -> dict[str, Any]:
    """The recipe a case trains: its own, or for a fine-tuning case (``pretrain``) its own starting
    from the pre-trained run, which is trained first under ``out/pretrain`` with the same bench
    overrides (so its seed shifts with the case's)."""
    if not case.pretrain:
        return case.recipe
    from liandan.training.api import train

    base = train(case.pretrain, overrides={**ov, "doctor.enabled": False}, out=out / "pretrain", quiet=True)
    recipe = copy.deepcopy(case.recipe)
    recipe.setdefault("model", {})["from_run"] = str(base.dir)
    return recipe


def run_case(case: Case, root: Path, repair: bool = True, rounds: int = 3, memory: Any = None,
             seed_offset: int = 0, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from liandan.doctor.repair import repair as do_repair
    from liandan.runs import DOCTOR, read_json
    from liandan.training.api import train

    t0 = time.perf_counter()
    cbs = injector(case.inject)
    out = root / case.name
    ov = case_overrides(case, seed_offset, overrides)
    recipe = case_recipe(case, out, ov)
    run = train(recipe, overrides=dict(ov), out=out / "round-0", callbacks=cbs() if cbs else None, quiet=True)
    doc = read_json(run.dir / DOCTOR)
    found = [f["code"] for f in doc["findings"]]
    ok_codes = set(case.expect) | set(case.allow)
    res: dict[str, Any] = {
        "name": case.name,
        "group": case.group,
        "split": case.split,
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

        try:
            rep = do_repair(
                recipe,
                dict(ov),
                rounds=rounds,
                out=out,
                memory=memory,
                baseline=(run.dir, [Finding.from_dict(f) for f in doc["findings"]],
                          judge_metrics(run.model, run.data, run.info, run.recipe)),
                callbacks=cbs,
            )
        except Exception as e:  # a repair that cannot run (e.g. no judge for this task) has failed
            res["repair"] = {"success": False, "rounds": 0, "error": f"{type(e).__name__}: {e}"}
            res["wall_s"] = round(time.perf_counter() - t0, 2)
            return res
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
    split: str | None = None,
) -> dict[str, Any]:
    """Run the cases (``split``: only that half); returns ``{"results": [...], "recall",
    "precision", "false_alarm_rate", "repair_success", "splits": {split: the same scores over its
    cases}, "wall_s", ...}``. A fresh memory store is used unless ``memory`` is given,
    so results do not depend on past runs. ``jobs`` > 1 runs cases in that many processes (one
    torch thread each); the shared memory store then sees outcomes in a less fixed order.
    ``seed_offset`` shifts every recipe's seed (see :func:`run_seeds` for several)."""
    import tempfile

    import torch

    from liandan.doctor.memory import Memory

    cases = load_cases(names, quick, split)
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
    split_of_case = {c.name: c.split for c in cases}
    splits = {s: score([r for r in results if split_of_case[r["name"]] == s], cases)
              for s in SPLITS if s in split_of_case.values()}
    return {"results": results, **score(results, cases), "splits": splits, "seed_offset": seed_offset,
            "wall_s": round(time.perf_counter() - t0, 1)}


SCORES = ("recall", "precision", "false_alarm_rate", "repair_success")


def run_seeds(names: list[str] | None = None, *, seeds: list[int], out: str | Path | None = None,
              echo: Any = None, **kw: Any) -> dict[str, Any]:
    """:func:`run_bench` once per seed offset in ``seeds`` (each with a fresh memory store unless
    ``memory`` is given; runs under ``out``/seed<offset>); returns ``{"offsets", "seeds": [per-seed
    documents], "scores": {score: {"mean", "sd", "min", "max"}}, "split_scores": {split: the same
    over that half's cases}, "gap": {score: held-out mean − dev mean}, "wall_s"}``."""
    t0 = time.perf_counter()
    docs = []
    for k in seeds:
        if echo:
            echo(f"# seed offset {k}")
        doc = run_bench(names, out=Path(out) / f"seed{k}" if out else None, echo=echo, seed_offset=k, **kw)
        docs.append(doc)
        if echo:
            echo(format_summary(doc))
    split_scores = {s: _spread([d["splits"][s] for d in docs if s in d.get("splits", {})])
                    for s in SPLITS if any(s in d.get("splits", {}) for d in docs)}
    gap = None
    if len(split_scores) == len(SPLITS):
        dev, held = split_scores["dev"], split_scores["heldout"]
        gap = {k: held[k]["mean"] - dev[k]["mean"] if held[k] and dev[k] else None for k in SCORES}
    return {"offsets": list(seeds), "seeds": docs, "scores": _spread(docs), "split_scores": split_scores,
            "gap": gap, "wall_s": round(time.perf_counter() - t0, 1)}


def _spread(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """score -> {"mean", "sd", "min", "max"} over ``docs`` (None where no document has it)."""
    import statistics

    scores: dict[str, Any] = {}
    for key in SCORES:
        xs = [d[key] for d in docs if d.get(key) is not None]
        scores[key] = {"mean": statistics.fmean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0,
                       "min": min(xs), "max": max(xs)} if xs else None
    return scores


def format_seeds(doc: dict[str, Any]) -> str:
    """One line per split and the held-out − dev gap when both halves ran, then the overall line."""
    def f(scores: dict[str, Any], key: str) -> str:
        s = scores[key]
        return "n/a" if s is None else f"{s['mean']:.3f} ± {s['sd']:.3f} [{s['min']:.3f}–{s['max']:.3f}]"

    def line(scores: dict[str, Any]) -> str:
        return "  ".join(f"{k} {f(scores, k)}" for k in SCORES)

    lines = []
    if len(doc.get("split_scores") or {}) > 1:
        n = {s: sum(1 for r in doc["seeds"][0]["results"] if r.get("split") == s) for s in doc["split_scores"]}
        lines += [f"split {s} ({n[s]} cases): {line(sc)}" for s, sc in doc["split_scores"].items()]
        lines.append("gap (heldout − dev): " + "  ".join(
            f"{k} {'n/a' if v is None else f'{v:+.3f}'}" for k, v in (doc.get("gap") or {}).items()))
    lines.append(f"seed offsets {','.join(map(str, doc['offsets']))} (mean ± sd [min–max]): {line(doc['scores'])}  "
                 f"wall {doc['wall_s']:.0f}s")
    return "\n".join(lines)


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
        if rp.get("error"):
            line += f" [{rp['error'][:80]}]"
    return line + f"  {r['wall_s']:.1f}s"


def format_summary(doc: dict[str, Any]) -> str:
    """The scores of one run_bench document: a line per split when both halves ran, then all cases."""
    f = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731

    def line(d: dict[str, Any]) -> str:
        return (f"cases {d['cases']} (faulty {d['faulty']}, healthy {d['healthy']})  recall {f(d['recall'])}  "
                f"precision {f(d['precision'])}  false_alarm_rate {f(d['false_alarm_rate'])}  "
                f"repair_success {f(d['repair_success'])}")

    splits = doc.get("splits") or {}
    lines = [f"split {s}: {line(d)}" for s, d in splits.items()] if len(splits) > 1 else []
    return "\n".join([*lines, f"{line(doc)}  wall {doc['wall_s']:.0f}s"])
