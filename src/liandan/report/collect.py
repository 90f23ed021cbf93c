"""Gather what the report shows from a run directory. Every piece is optional: a missing or broken
file, a model that cannot be loaded or a failing evaluation becomes a note in ``notes``, never an
exception, so a report can be written for any run, including a crashed one."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Pieces:
    """Everything the report renders; ``None`` = not available (the reason is in ``notes``)."""

    run_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)
    recipe_text: str | None = None
    data: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    doctor: dict[str, Any] | None = None
    ood: list[dict[str, Any]] = field(default_factory=list)
    evaluation: dict[str, Any] | None = None
    examples: dict[str, Any] | None = None  # a few inputs and the model's answers (report/examples.py)
    model: dict[str, Any] | None = None
    notes: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    detailed_model: bool | None = None


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"[:300]


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    return doc if isinstance(doc, dict) else None


def collect(run_dir: Path, evaluate: bool = True, detailed_model: bool | None = None) -> Pieces:
    """Read the run's files; with ``evaluate``, load the model and evaluate it on the test split."""
    p = Pieces(run_dir)
    p.detailed_model = detailed_model
    steps = [
        ("summary", _summary),
        ("recipe", _recipe),
        ("data", _data),
        ("metrics", _metrics),
        ("doctor", _doctor),
        ("ood", _ood),
    ]
    if evaluate:
        steps.append(("evaluation", _evaluation))
    for name, fn in steps:
        t0 = time.perf_counter()
        try:
            fn(p)
        except Exception as e:  # noqa: BLE001 - a report shows what it can
            p.notes[name] = _short(e)
        p.timings[name] = time.perf_counter() - t0
    return p


def _summary(p: Pieces) -> None:
    doc = _read_json(p.run_dir / "summary.json")
    if doc is None:
        p.notes["summary"] = "no summary.json"
    p.summary = doc or {}


def _recipe(p: Pieces) -> None:
    path = p.run_dir / "recipe.yaml"
    if path.is_file():
        p.recipe_text = path.read_text()
    else:
        p.notes["recipe"] = "no recipe.yaml"


def _data(p: Pieces) -> None:
    p.data = _read_json(p.run_dir / "data.json")


def _metrics(p: Pieces) -> None:
    path = p.run_dir / "metrics.csv"
    if not path.is_file():
        p.notes["metrics"] = "no metrics.csv"
        return
    from liandan.training.rundir import read_metrics

    rows, seen = [], set()
    for r in read_metrics(path):
        key = tuple(sorted((k, str(v)) for k, v in r.items()))
        if key not in seen:  # a resumed run may repeat a row
            seen.add(key)
            rows.append(r)
    p.metrics = rows


def _doctor(p: Pieces) -> None:
    p.doctor = _read_json(p.run_dir / "doctor.json")


def _ood(p: Pieces) -> None:
    doc = _read_json(p.run_dir / "ood.json")
    if doc:
        p.ood = [r for r in doc.get("results", []) if isinstance(r, dict) and r.get("methods")]


def _evaluation(p: Pieces) -> None:
    if p.summary.get("status") not in (None, "completed", "stopped_early"):
        p.notes["evaluation"] = f"not evaluated: the run's status is {p.summary.get('status')!r}"
        return
    from liandan.evaluation.metrics import evaluate_loaded
    from liandan.evaluation.runio import open_run, raw_split

    run, data = open_run(p.run_dir)
    split = "test" if data.test is not None else "val" if data.val is not None else "train"
    p.evaluation = evaluate_loaded(run, data, split)
    try:
        from liandan.report.examples import examples

        p.examples = examples(run, data, split)
    except Exception as e:  # noqa: BLE001 - the figure is optional
        p.notes["examples"] = _short(e)
    try:
        p.model = _model_summary(run, raw_split(data, split, 1)[0], p.detailed_model)
    except Exception as e:  # noqa: BLE001
        p.notes["model"] = _short(e)
        p.model = {"name": run.recipe.model.name, "params": sum(t.numel() for t in run.model.parameters())}


def _model_summary(run, example, detailed: bool | None = None) -> dict[str, Any]:
    """Parameter counts and a per-layer table (output shapes from one forward with hooks).

    The inspect pillar's ``summary`` adds counted MACs, but its FLOP counter imports
    ``torch._dynamo`` (seconds), so it runs only when ``detailed`` is True, or when None and
    dynamo is already loaded (then it is cheap).
    """
    import sys

    import torch

    model = run.model
    out: dict[str, Any] = {
        "name": run.recipe.model.name,
        "params": sum(t.numel() for t in model.parameters()),
        "trainable_params": sum(t.numel() for t in model.parameters() if t.requires_grad),
        "param_bytes": sum(t.numel() * t.element_size() for t in model.parameters()),
    }
    x = run.info.normalize_x(example)
    if detailed or (detailed is None and "torch._dynamo" in sys.modules):
        try:
            from liandan.inspection import summary

            s = summary(model, example=x, latency_runs=0)
            out.update(
                {
                    "macs": s.macs,
                    "activation_bytes": s.activation_bytes,
                    "layers": [
                        {
                            "name": i.name,
                            "type": i.type,
                            "depth": i.depth,
                            "output_shape": i.output_shape,
                            "params": i.params,
                            "macs": i.macs,
                        }
                        for i in s.layers
                    ],
                }
            )
            return out
        except Exception:  # noqa: BLE001 - fall back to the plain table below
            pass
    shapes: dict[str, list[int]] = {}
    hooks = []
    for name, mod in model.named_modules():
        if name and not any(True for _ in mod.children()):

            def hook(_m, _a, o, name=name) -> None:
                if isinstance(o, torch.Tensor):
                    shapes[name] = list(o.shape)

            hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    out["layers"] = [
        {
            "name": n,
            "type": type(m).__name__,
            "depth": n.count(".") + 1,
            "output_shape": shapes.get(n),
            "params": sum(t.numel() for t in m.parameters(recurse=False)),
            "macs": None,
        }
        for n, m in model.named_modules()
        if n and not any(True for _ in m.children())
    ]
    return out


def ood_sweeps(results: list[dict[str, Any]]) -> dict[str, list[tuple[float, dict[str, Any]]]]:
    """OOD results that form severity sweeps: per shift kind (``rotate``, ``blur``, ``noise``) with
    three or more numeric severities against the same ID split, ``[(severity, result), ...]`` sorted."""
    groups: dict[str, dict[float, dict[str, Any]]] = {}
    for r in results:
        kind, _, arg = str(r.get("ood", {}).get("source", "")).partition(":")
        try:
            sev = float(arg)
        except ValueError:
            continue
        key = f"{kind} ({r.get('id', {}).get('split', '?')})"
        groups.setdefault(key, {})[sev] = r
    return {k: sorted(v.items()) for k, v in groups.items() if len(v) >= 3}
