"""``compress``: the one entry the CLI verb calls (``liandan compress RUN_DIR --method ...``),
dispatching to :func:`quantize`, :func:`prune` or :func:`distill`, and the table it prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from liandan.errors import LiandanError, did_you_mean

METHODS = ("quantize", "prune", "distill")


def compress(run_dir: str | Path, method: str = "quantize", amount: float = 0.5, structured: bool = False,
             student: str | Path | None = None, out: str | Path | None = None, finetune_epochs: int = 0,
             overrides: list[str] | None = None, temperature: float = 4.0, alpha: float = 0.9,
             dtype: str = "qint8", quiet: bool = True) -> dict[str, Any]:
    """Compress the trained run ``run_dir`` with ``method``; returns the ``compress.json`` document.

    ``amount``/``structured``/``finetune_epochs``: pruning; ``student``/``overrides``/``temperature``
    /``alpha``: distillation (``run_dir`` is the teacher); ``dtype``: quantisation (qint8, float16).
    """
    if method not in METHODS:
        raise LiandanError(f"unknown compression method {method!r}{did_you_mean(method, list(METHODS))}; "
                           f"available: {', '.join(METHODS)}")
    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").is_file() or not (run_dir / "data.json").is_file():
        raise LiandanError(f"{run_dir} is not a run directory (no recipe.yaml / data.json)")
    from liandan.compress.distill import distill  # torch: after the checks that need none
    from liandan.compress.prune import check_amount, prune
    from liandan.compress.quantize import quantize

    if method == "prune":
        return prune(run_dir, check_amount(amount), structured=structured, out=out, finetune_epochs=finetune_epochs,
                     quiet=quiet)
    if method == "quantize":
        return quantize(run_dir, out=out, dtype=dtype)
    if student is None:
        raise LiandanError("--method distill needs --student PRESET_OR_RECIPE (the smaller model to train)")
    return distill(run_dir, student, overrides=overrides, out=out, temperature=temperature, alpha=alpha,
                   quiet=quiet)


def format_table(doc: dict[str, Any]) -> list[str]:
    """Human lines for a ``compress.json`` document: before/after per measured quantity."""
    roles = doc.get("roles", {"before": "before", "after": "after"})
    key = doc.get("metric", "accuracy")
    t = doc["test"]
    rows = [("size (bytes)", f"{doc['size_bytes']['before']:,}", f"{doc['size_bytes']['after']:,}",
             f"{doc['size_bytes']['ratio']:.2f}x smaller"),
            ("params", f"{doc['params']['before']:,}", f"{doc['params']['after']:,}", ""),
            ("weight sparsity", f"{doc['sparsity']['before']:.3f}", f"{doc['sparsity']['after']:.3f}", ""),
            (f"test {key}", f"{t['before'].get(key, float('nan')):.4f}", f"{t['after'].get(key, float('nan')):.4f}",
             f"{t['delta']:+.4f}")]
    for bs in ("batch1", "batch64"):
        lat = doc.get("latency", {}).get(bs)
        if lat:
            rows.append((f"latency {bs} ms", f"{lat['before_ms']:.4f}", f"{lat['after_ms']:.4f}",
                         f"{lat['ratio']:.2f}x faster" if lat["ratio"] >= 1 else f"{1 / lat['ratio']:.2f}x slower"))
    lines = [f"{doc['method']}: {doc['source']} -> {doc['out']}",
             f"{'':<18}{roles['before']:>12}{roles['after']:>12}"]
    lines += [f"{a:<18}{b:>12}{c:>12}  {d}" for a, b, c, d in rows]
    lines.append(f"max |delta output| on the test split: {doc['max_abs_delta_output']:.4g}")
    if "top1_agreement" in doc:
        lines.append(f"student agrees with the teacher on {doc['top1_agreement']:.1%} of the test split")
    return lines
