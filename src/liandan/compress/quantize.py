"""Post-training dynamic int8 quantisation (Jacob et al. 2018, "Quantization and Training of
Neural Networks for Efficient Integer-Arithmetic-Only Inference").

Weights of ``nn.Linear`` (and ``nn.LSTM`` / ``nn.GRU``) become int8 with one affine map per
tensor, ``w ≈ s·(q − z)``: torch's default weight observer is symmetric min/max, so
``s = max|w| / 127.5``, ``z = 0``, ``q = clamp(round(w/s), −128, 127)``. Activations are quantised
on the fly per batch from their observed range ("dynamic"), so no calibration data is needed.
Matrix products run as int8×int8→int32 (FBGEMM/oneDNN) and are rescaled to float. Weights
shrink 4×; batch-1 latency falls where the layer is memory-bound.

``torch.ao.quantization.quantize_dynamic`` still works in torch 2.13 but warns that
``torch.ao.quantization`` is deprecated (torchao's ``quantize_`` is the successor, and on this
CPU it gave size only, no speed: reference/peft-compress-export.md §3); the warnings are
silenced here, locally.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liandan.errors import LiandanError

LAYERS = {"linear": nn.Linear, "lstm": nn.LSTM, "gru": nn.GRU}
DTYPES = {"qint8": torch.qint8, "float16": torch.float16}


def _check(dtype: str, layers: list[str]) -> None:
    if dtype not in DTYPES:
        raise LiandanError(f"unknown quantisation dtype {dtype!r}; available: {', '.join(DTYPES)}")
    bad = [n for n in layers if n not in LAYERS]
    if bad or not layers:
        raise LiandanError(f"unknown layer kind {bad[0] if bad else '(none)'!r} to quantize; "
                           f"available: {', '.join(LAYERS)}")


def apply_quantization(model: nn.Module, params: dict[str, Any]) -> nn.Module:
    """A dynamically quantised copy of ``model`` (eval mode); ``params``: ``dtype``, ``layers``."""
    dtype, layers = params.get("dtype", "qint8"), list(params.get("layers", list(LAYERS)))
    _check(dtype, layers)
    kinds = {LAYERS[n] for n in layers}
    if not any(isinstance(m, tuple(kinds)) for m in model.modules()):
        raise LiandanError(f"{type(model).__name__} has no {'/'.join('nn.' + LAYERS[n].__name__ for n in layers)} "
                           "layer to quantize (dynamic quantisation covers those only)")
    model = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.filterwarnings("ignore", message=".*deprecat.*")
        q = torch.ao.quantization.quantize_dynamic(model, kinds, dtype=DTYPES[dtype])
    if next(q.parameters(), None) is None:
        # every weight is packed now; code that finds the device from the first parameter
        # (liandan.evaluation.runio.logits_of) needs one: an empty, frozen anchor on the same device
        q.register_parameter("device_anchor", nn.Parameter(torch.empty(0), requires_grad=False))
    return q


def quantize(run_dir: str | Path, out: str | Path | None = None, dtype: str = "qint8",
             layers: list[str] | tuple[str, ...] = ("linear", "lstm", "gru"), latency: bool = True,
             repeats: int = 50) -> dict[str, Any]:
    """Dynamic int8 quantisation of a trained run; writes ``out`` and returns its ``compress.json``.

    The returned document has ``size_bytes`` (the weight files on disk, before/after/ratio), ``params``,
    ``test`` (the run's own metrics before/after and the change of the main metric),
    ``max_abs_delta_output`` (max |Δlogit| over the test split) and ``latency`` (batch 1 and 64,
    median ms on one thread, ratio fp32/int8). ``out`` defaults to ``RUN_DIR-int8`` next to the run.
    """
    from liandan.compress.int8_store import save_quantized
    from liandan.compress.measure import compare
    from liandan.compress.store import check_out, default_out, write_output
    from liandan.evaluation.runio import open_run

    params = {"dtype": dtype, "layers": list(layers)}
    _check(dtype, params["layers"])
    run_dir = Path(run_dir)
    run, data = open_run(run_dir)
    out = check_out(Path(out) if out is not None else default_out(run_dir, "int8" if dtype == "qint8" else dtype))
    before = run.model.eval()
    after = apply_quantization(before, params)
    measured = compare(run, data, before, after, latency=latency, repeats=repeats)
    quantized = sorted({m._get_name() for m in after.modules() if type(m).__module__.startswith("torch.ao.nn.quantized")
                        and "Quantized" in m._get_name()})
    doc = {"method": "quantize", "source": str(run_dir), "out": str(out), "options": params,
           "quantized_modules": quantized, **measured,
           "note": "checkpoints/final.safetensors holds the int8 weights with their scales and zero points "
                   "(float16 for dtype float16; LSTM/GRU weights float32, quantised at load); size_bytes are "
                   "the weight files on disk; load_compressed rebuilds this model bit for bit (no pickle)"}
    write_output(out, run, run.recipe, before, doc, final={"test": measured["test"]["after"]},
                 save=lambda path: save_quantized(before, after, path, params))
    return doc
