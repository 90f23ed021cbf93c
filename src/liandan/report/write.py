"""Write a run's report: collect the pieces, draw the figures, render one HTML page.

Robust by construction: each piece and each figure is optional (see :mod:`.collect`), matplotlib
missing only drops the figures, and the page and figures are written atomically (temp + rename),
so a viewer never sees half a file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from liandan.errors import LiandanError
from liandan.report.collect import Pieces, _short, collect, ood_sweeps


def _draw(p: Pieces) -> dict[str, bytes]:
    try:
        from liandan.report import figures as F
    except ImportError as e:  # matplotlib is the optional [report] extra
        p.notes["figures"] = f"{_short(e)} (pip install 'liandan[report]')"
        return {}
    jobs: list[tuple[str, Callable[[], bytes | None]]] = [
        ("loss", lambda: F.loss_curves(p.metrics)),
        ("metrics", lambda: F.metric_curves(p.metrics)),
        ("lr", lambda: F.lr_curve(p.metrics)),
        ("grad_norm", lambda: F.grad_norm_curve(p.metrics)),
    ]
    if p.evaluation:
        ev = p.evaluation
        jobs += [("confusion", lambda: F.confusion(ev)), ("calibration", lambda: F.calibration(ev))]
    if p.examples and "images" in p.examples:
        jobs.append(("examples", lambda: F.examples(p.examples)))
    for i, r in enumerate(p.ood):
        jobs.append((f"ood_{i}", lambda r=r: F.ood_histograms(r)))
    for k, (name, points) in enumerate(ood_sweeps(p.ood).items()):
        jobs.append((f"ood_sweep_{k}", lambda name=name, points=points: F.ood_sweep(name, points)))
    figs: dict[str, bytes] = {}
    for name, job in jobs:
        try:
            png = job()
        except ImportError as e:
            p.notes["figures"] = f"{_short(e)} (pip install 'liandan[report]')"
            return figs
        except Exception as e:  # noqa: BLE001 - one broken figure must not lose the report
            p.notes[f"figure {name}"] = _short(e)
            continue
        if png:
            figs[name] = png
    return figs


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_report(run_dir: str | Path, evaluate: bool = True, detailed_model: bool | None = None) -> Path:
    """Write ``RUN_DIR/report.html`` and ``RUN_DIR/figures/*.png``; returns the page's path.

    ``evaluate`` reloads the model to draw the confusion matrix, per-class table and
    calibration diagram on the test split; ``detailed_model`` adds counted MACs per layer
    (slow on first use: see :func:`.collect._model_summary`). Nothing optional raises: a missing piece becomes a
    note on the page. Only a run directory that does not exist is an error.
    """
    from liandan.report.html import render

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LiandanError(f"{run_dir} is not a directory")
    if not (run_dir / "recipe.yaml").is_file():  # a report belongs in a run, not in any folder named
        raise LiandanError(f"{run_dir} is not a run directory (no recipe.yaml); pass the folder `liandan train` wrote")
    t0 = time.perf_counter()
    p = collect(run_dir, evaluate=evaluate, detailed_model=detailed_model)
    t1 = time.perf_counter()
    figs = _draw(p)
    p.timings["figures"] = time.perf_counter() - t1
    fig_dir = run_dir / "figures"
    try:
        fig_dir.mkdir(exist_ok=True)
        for name, png in figs.items():
            _atomic_write(fig_dir / f"{name}.png", png)
    except OSError as e:
        p.notes["figures/"] = _short(e)
    p.timings["total"] = time.perf_counter() - t0
    out = run_dir / "report.html"
    _atomic_write(out, render(p, figs).encode("utf-8"))
    return out
