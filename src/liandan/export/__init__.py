"""Export pillar: a trained run to deployment formats, each file checked against PyTorch.

- :func:`to_onnx`: ONNX (onnx.ai) for onnxruntime; raw inputs in, logits/values out.
- :func:`to_gguf`: GGUF (ggml's single-file format, as read by llama.cpp) for LLaMA-style
  language-model runs, verified by loading it back with ``transformers``.
- :func:`export`: either, by name (``liandan export RUN_DIR --format onnx|gguf``).

Each writes its file atomically and merges its numbers into ``export.json`` beside it.
onnx, onnxruntime, gguf and transformers are imported inside the functions (the ``export`` extra).
"""

from __future__ import annotations

from liandan.export.api import FORMATS, export
from liandan.export.gguf_export import OUTTYPES, to_gguf
from liandan.export.onnx_export import to_onnx

__all__ = ["FORMATS", "OUTTYPES", "export", "to_gguf", "to_onnx"]
