"""``liandan.export.export``: the one function behind ``liandan export DIR --format ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from liandan.errors import LiandanError, did_you_mean

FORMATS = ("onnx", "gguf")


def export(run_dir: str | Path, format: str = "onnx", out: str | Path | None = None, *,  # noqa: A002
           outtype: str | None = None, check: bool = True, dynamic_batch: bool = True,
           opset: int | None = None) -> dict[str, Any]:
    """Export ``run_dir`` as ``format`` (``onnx`` or ``gguf``); returns its ``export.json`` entry.

    For ``gguf``, ``run_dir`` may also be a Hugging Face ``save_pretrained`` directory of a LLaMA or
    Qwen2 model (a merged fine-tune, ``RUN/hf``). ``outtype`` (``f32``, ``f16``, ``q8_0``,
    ``q4_0``) is GGUF's; ``dynamic_batch`` and ``opset`` are ONNX's."""
    fmt = str(format).lower()
    if fmt not in FORMATS:
        raise LiandanError(f"unknown export format {format!r}{did_you_mean(fmt, list(FORMATS))}; "
                           f"available: {', '.join(FORMATS)}")
    if fmt == "onnx":
        if outtype is not None:
            raise LiandanError("--outtype applies to --format gguf (ONNX files keep float32 weights)")
        from liandan.export.gguf_source import is_hf_dir
        from liandan.export.onnx_export import to_onnx

        if is_hf_dir(Path(run_dir)):
            raise LiandanError(f"{run_dir} is a save_pretrained directory: ONNX export takes run directories "
                               f"(GGUF export takes both: --format gguf)")

        return to_onnx(run_dir, out, dynamic_batch=dynamic_batch, opset=opset, check=check)
    if opset is not None or not dynamic_batch:
        raise LiandanError("--opset and --static-batch apply to --format onnx")
    from liandan.export.gguf_export import to_gguf

    return to_gguf(run_dir, out, outtype=outtype or "f32", check=check)
