"""The report's figures as PNG bytes, drawn with matplotlib's object API on the Agg canvas.

``matplotlib.figure.Figure`` with ``FigureCanvasAgg`` needs no pyplot, so it neither switches
the user's backend nor keeps global figure state. Each function returns ``None`` when its data
is missing, so the report simply leaves the figure out.
"""

from __future__ import annotations

import io
import math
from typing import Any

DPI = 110
BASE = {"epoch", "step", "split", "loss", "lr", "grad_norm", "wall_s"}
TRAIN, VAL, STEP = "#1f77b4", "#d62728", "#9ecae1"
RIGHT, WRONG = "#1a7f37", "#d62728"


def _figure(w: float = 5.2, h: float = 3.2, rows: int = 1, cols: int = 1, **kw: Any):
    """A figure with fixed margins (in inches): a layout engine would draw every figure twice."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.75 / w, right=1 - 0.2 / w, bottom=0.55 / h, top=1 - 0.35 / h, wspace=0.3, hspace=0.35)
    axes = fig.subplots(rows, cols, squeeze=False, **kw)
    return fig, axes


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, pil_kwargs={"compress_level": 3})
    return buf.getvalue()


def _maybe_log_y(a, ys: list[float]) -> None:
    """Log y axis when the values span more than 1.5 decades, with plain tick labels (mathtext
    labels cost more than the whole plot); a linear axis reads better over a shorter range."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    if not ys or min(ys) <= 0 or max(ys) / min(ys) < 30:
        return
    a.set_yscale("log")
    a.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.yaxis.set_minor_formatter(NullFormatter())


def _integer_x(a) -> None:
    from matplotlib.ticker import MaxNLocator

    a.xaxis.set_major_locator(MaxNLocator(integer=True))


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _series(rows: list[dict], split: str, key: str, x: str = "step") -> tuple[list, list]:
    pts = [(r[x], r[key]) for r in rows if r.get("split") == split and _finite(r.get(key)) and _finite(r.get(x))]
    return [p[0] for p in pts], [p[1] for p in pts]


def loss_curves(rows: list[dict]) -> bytes | None:
    """Loss against the optimiser step: every logged step (faint) and each epoch's train / val loss."""
    series = [
        ("step", "steps", STEP, "-", None),
        ("train", "train (epoch)", TRAIN, "-", "o"),
        ("val", "val (epoch)", VAL, "-", "s"),
    ]
    if not any(_series(rows, s, "loss")[0] for s, *_ in series):
        return None
    fig, ax = _figure()
    a = ax[0, 0]
    for split, label, colour, ls, marker in series:
        xs, ys = _series(rows, split, "loss")
        if xs:
            a.plot(xs, ys, ls, color=colour, marker=marker, ms=3, lw=1.2 if marker else 0.8, label=label)
    a.set(xlabel="step", ylabel="loss", title="Loss")
    _maybe_log_y(a, [y for s, *_ in series for y in _series(rows, s, "loss")[1]])
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
    return _png(fig)


def metric_curves(rows: list[dict]) -> bytes | None:
    """Each metric of metrics.csv per epoch, train and val."""
    names = [k for k in (rows[0] if rows else {}) if k not in BASE]
    names = [n for n in names if _series(rows, "train", n, "epoch")[0] or _series(rows, "val", n, "epoch")[0]]
    if not names:
        return None
    names = names[:3]
    fig, ax = _figure(5.2 if len(names) == 1 else 3.5 * len(names), 3.2, 1, len(names))
    for a, n in zip(ax[0], names, strict=True):
        for split, colour, marker in (("train", TRAIN, "o"), ("val", VAL, "s")):
            xs, ys = _series(rows, split, n, "epoch")
            if xs:
                a.plot([x + 1 for x in xs], ys, color=colour, marker=marker, ms=3, label=split)
        a.set(xlabel="epoch", title=n.replace("_", " "))
        _integer_x(a)
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    return _png(fig)


def _step_or_epoch(rows: list[dict], key: str) -> tuple[list, list]:
    xs, ys = _series(rows, "step", key)
    return (xs, ys) if xs else _series(rows, "train", key)


def lr_curve(rows: list[dict]) -> bytes | None:
    """Learning rate against the step (the schedule as the optimiser saw it)."""
    xs, ys = _step_or_epoch(rows, "lr")
    if not xs:
        return None
    fig, ax = _figure(5.2, 3.2)
    ax[0, 0].plot(xs, ys, color="#2ca02c", lw=1.4)
    ax[0, 0].set(xlabel="step", ylabel="learning rate", title="Learning rate")
    ax[0, 0].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax[0, 0].grid(alpha=0.3)
    return _png(fig)


def grad_norm_curve(rows: list[dict]) -> bytes | None:
    """Global gradient norm (before clipping) against the step, log scale."""
    xs, ys = _step_or_epoch(rows, "grad_norm")
    if not xs:
        return None
    fig, ax = _figure(5.2, 3.2)
    a = ax[0, 0]
    a.plot(xs, ys, color="#9467bd", lw=1.0)
    _maybe_log_y(a, ys)
    a.set(xlabel="step", ylabel="‖g‖₂", title="Gradient norm")
    a.grid(alpha=0.3)
    return _png(fig)


def confusion(ev: dict[str, Any]) -> bytes | None:
    """Confusion matrix, colour = share of the true class (row), numbers = counts."""
    cm = ev.get("confusion_matrix")
    if not cm:
        return None
    import numpy as np

    m = np.asarray(cm, dtype=float)
    k = len(m)
    share = m / np.maximum(m.sum(1, keepdims=True), 1)
    size = min(2.6 + 0.2 * k, 8.0)
    fig, ax = _figure(size + 1.0, size + 0.4)
    a = ax[0, 0]
    im = a.imshow(share, cmap="Blues", vmin=0, vmax=1)
    names = ev.get("class_names") or [str(i) for i in range(k)]
    if k <= 30:
        a.set_xticks(range(k), [str(n)[:10] for n in names], rotation=90 if k > 10 else 0, fontsize=8)
        a.set_yticks(range(k), [str(n)[:10] for n in names], fontsize=8)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    a.text(
                        j,
                        i,
                        f"{int(m[i, j])}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if share[i, j] > 0.6 else "black",
                    )
    a.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix ({ev.get('source', 'test')})")
    fig.colorbar(im, ax=a, shrink=0.8, label="share of true class")
    return _png(fig)


def calibration(ev: dict[str, Any]) -> bytes | None:
    """Reliability diagram (accuracy per confidence bin vs the diagonal) and confidence histogram."""
    rel = ev.get("reliability")
    if not rel or not rel.get("bins"):
        return None
    bins = rel["bins"]
    fig, ax = _figure(4.6, 4.6, 2, 1, sharex=True, height_ratios=[3, 1])
    top, bottom = ax[0, 0], ax[1, 0]
    width = bins[0]["hi"] - bins[0]["lo"]
    lo = [b["lo"] for b in bins]
    acc = [b["accuracy"] or 0.0 for b in bins]
    top.bar(lo, acc, width=width, align="edge", color=TRAIN, edgecolor="white", label="accuracy")
    filled = [b for b in bins if b["count"]]
    top.plot(
        [(b["lo"] + b["hi"]) / 2 for b in filled],
        [b["confidence"] for b in filled],
        "o",
        color=VAL,
        ms=4,
        label="mean confidence",
    )
    top.plot([0, 1], [0, 1], "k--", lw=1)
    top.set(
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"Calibration: ECE {rel['ece']:.3f}, MCE {rel['mce']:.3f}",
    )
    top.legend(fontsize=8, loc="upper left")
    bottom.bar(lo, [b["count"] for b in bins], width=width, align="edge", color="#7f7f7f", edgecolor="white")
    bottom.set(xlabel="confidence (max softmax probability)", ylabel="samples")
    return _png(fig)


def ood_histograms(res: dict[str, Any]) -> bytes | None:
    """Score histograms of ID and OOD inputs per method, with the calibrated threshold."""
    methods = [(m, r) for m, r in res.get("methods", {}).items() if r.get("hist")]
    if not methods:
        return None
    n = len(methods)
    cols = min(n, 2)
    rows_ = math.ceil(n / cols)
    fig, ax = _figure(3.8 * cols, 2.9 * rows_, rows_, cols)
    fig.subplots_adjust(hspace=0.6, wspace=0.3)
    flat = [a for row in ax for a in row]
    for a, (m, r) in zip(flat, methods, strict=False):
        h = r["hist"]
        a.stairs(h["id"], h["edges"], fill=True, alpha=0.5, color=TRAIN, label="ID")
        a.stairs(h["ood"], h["edges"], fill=True, alpha=0.5, color=VAL, label="OOD")
        if _finite(r.get("threshold")):
            a.axvline(r["threshold"], color="k", ls="--", lw=1, label="threshold")
        a.set(title=f"{m}: AUROC {r['auroc']:.3f}", xlabel="score (higher = in-distribution)")
        if h.get("clipped"):
            a.set_xlabel("score (higher = ID; tails clipped)")
        a.legend(fontsize=7)
    for a in flat[n:]:
        a.set_axis_off()
    return _png(fig)


def ood_sweep(name: str, points: list[tuple[float, dict[str, Any]]]) -> bytes | None:
    """AUROC against shift severity per method, with ±2 standard-error bars (Hanley & McNeil)."""
    methods = list(points[0][1].get("methods", {}))
    if not methods:
        return None
    fig, ax = _figure(5.2, 3.2)
    a = ax[0, 0]
    for m in methods:
        pts = [(sev, r["methods"][m]) for sev, r in points if m in r.get("methods", {})]
        xs, ys = [p[0] for p in pts], [p[1].get("auroc") for p in pts]
        err = [2 * (p[1].get("auroc_se") or 0.0) for p in pts]
        a.errorbar(xs, ys, yerr=err, marker="o", ms=3, capsize=2, lw=1.2, label=m)
    a.axhline(0.5, color="k", lw=0.8, ls=":", label="chance")
    a.set(xlabel=f"severity: {name}", ylabel="AUROC", title="OOD severity sweep", ylim=(0, 1.02))
    a.grid(alpha=0.3)
    a.legend(fontsize=7)
    return _png(fig)


def examples(ex: dict[str, Any]) -> bytes | None:
    """Inputs (or samples) in a grid, each titled with the model's answer: green right, red wrong."""
    imgs, labels = ex["images"], ex["labels"]
    if not len(imgs):
        return None
    ncol = min(len(imgs), 8)
    nrow = -(-len(imgs) // ncol)
    titled = any(lab is not None for lab in labels)
    w, h = 1.4 * ncol, (1.75 if titled else 1.3) * nrow + 0.4
    fig, ax = _figure(w, h, nrow, ncol)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.4 / h, wspace=0.1, hspace=0.6 if titled else 0.1)
    for i, a in enumerate(ax.flat):
        a.axis("off")
        if i >= len(imgs):
            continue
        im = imgs[i].permute(1, 2, 0).numpy()
        a.imshow(im[..., 0] if im.shape[-1] == 1 else im, cmap="gray" if im.shape[-1] == 1 else None,
                 vmin=0, vmax=1, interpolation="nearest")
        if labels[i] is not None:
            text, right = labels[i]
            a.set_title(text, fontsize=7, color=RIGHT if right else WRONG)
    fig.suptitle(ex["title"], fontsize=9)
    return _png(fig)
