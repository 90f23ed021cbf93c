"""``liandan.export.export``: the one function behind ``liandan export RUN_DIR --format ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from liandan.errors import LiandanError, did_you_mean

FORMATS = ("onnx", "gguf")


def export(run_dir: str | Path, format: str = "onnx", out: str | Path | None = None, *,  # noqa: A002
           outtype: str | None = None, check: bool = True, dynamic_batch: bool = True,
           opset: int | None = None) -> dict[str, Any]:
    """Export ``run_dir`` as ``format`` (``onnx`` or ``gguf``); returns its ``export.json`` entry.

    ``outtype`` (``f32``, ``f16``, ``q8_0``, ``q4_0``) is GGUF's; ``dynamic_batch`` and ``opset`` are ONNX's."""
    fmt = str(format).lower()
    if fmt not in FORMATS:
        raise LiandanError(f"unknown export format {format!r}{did_you_mean(fmt, list(FORMATS))}; "
                           f"available: {', '.join(FORMATS)}")
    if fmt == "onnx":
        if outtype is not None:
            raise LiandanError("--outtype applies to --format gguf (ONNX files keep float32 weights)")
        from liandan.export.onnx_export import to_onnx

        return to_onnx(run_dir, out, dynamic_batch=dynamic_batch, opset=opset, check=check)
    if opset is not None or not dynamic_batch:
        raise LiandanError("--opset and --static-batch apply to --format onnx")
    from liandan.export.gguf_export import to_gguf

    return to_gguf(run_dir, out, outtype=outtype or "f32", check=check)
