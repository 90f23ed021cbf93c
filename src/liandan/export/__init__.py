"""Export pillar: a trained run to deployment formats, each file checked against PyTorch.

- :func:`to_onnx`: ONNX (onnx.ai) for onnxruntime; raw inputs in, logits/values out.
- :func:`to_gguf`: GGUF (ggml's single-file format, as read by llama.cpp) for LLaMA-style
  language-model runs and LLaMA / Qwen2 ``save_pretrained`` directories, with their real
  tokenizers; verified by a re-implementation of llama.cpp's tokenizer fed the file's metadata
  (:mod:`~liandan.export.llamacpp_tokenizer`) and by loading it back with ``transformers``.
  ``bench/llamacpp_check.py`` runs llama.cpp itself on the files.
- :func:`export`: either, by name (``liandan export DIR --format onnx|gguf``).

Each writes its file atomically (a hidden ``.NAME.part-PID`` renamed into place; those of killed
exports are removed by the next export to the folder) and merges its numbers into ``export.json``
beside it.
onnx, onnxruntime, gguf and transformers are imported inside the functions (the ``export`` extra).
"""

from __future__ import annotations

from liandan.export.api import FORMATS, export
from liandan.export.gguf_export import OUTTYPES, to_gguf
from liandan.export.onnx_export import to_onnx

__all__ = ["FORMATS", "OUTTYPES", "export", "to_gguf", "to_onnx"]
