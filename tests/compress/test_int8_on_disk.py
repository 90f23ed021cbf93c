"""An int8 run is int8 on disk: the weight file holds int8 tensors (with scales and zero points),
compress.json's sizes are the files' sizes, reloading rebuilds the measured model bit for bit, and
the run exports to ONNX (dequantised weights) within a stated tolerance of the int8 model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import liandan
from liandan.compress import load_compressed, quantize
from liandan.compress.quantize import apply_quantization

QUIET = ["doctor.enabled=false", "train.tensorboard=false", "report=false"]


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """bench/compress.py's wide model: digits MLP 64→1024→1024→10 (1.1M parameters), 1 epoch."""
    root = tmp_path_factory.mktemp("int8-disk")
    teacher = liandan.train("digits-mlp", overrides=[*QUIET, "train.epochs=1", "optim.lr=2e-3",
                                                     "model.hidden=[1024,1024]"], out=root / "wide", quiet=True).dir
    out = root / "wide-int8"
    return teacher, out, quantize(teacher, out=out, latency=False)


def test_int8_weights_file_is_what_compress_json_reports(wide) -> None:
    teacher, out, doc = wide
    src, dst = teacher / "checkpoints" / "final.safetensors", out / "checkpoints" / "final.safetensors"
    assert doc["params"]["before"] > 1_000_000
    assert doc["size_bytes"]["before"] == os.path.getsize(src)
    assert doc["size_bytes"]["after"] == os.path.getsize(dst)
    assert json.loads((out / "compress.json").read_text())["size_bytes"] == doc["size_bytes"]
    assert doc["size_bytes"]["ratio"] >= 3.5 and os.path.getsize(src) / os.path.getsize(dst) >= 3.5
    assert src.read_bytes() != dst.read_bytes()
    print(f"int8 on disk: {os.path.getsize(src)} -> {os.path.getsize(dst)} bytes ({doc['size_bytes']['ratio']}x)")
    with safe_open(str(dst), "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    ints = [k for k, d in dtypes.items() if d == "I8"]
    assert len(ints) == 3 and all(k.endswith(".weight.int8") for k in ints)
    assert sum(1 for k in dtypes if k.endswith(".weight.scale")) == 3


def test_reload_equals_the_in_memory_int8_model(wide) -> None:
    teacher, out, doc = wide
    in_memory = apply_quantization(liandan.load_run(teacher).model.eval(), doc["options"])
    reloaded = load_compressed(out).model
    x = torch.randn(64, 8, 8)
    with torch.inference_mode():
        assert torch.equal(reloaded(x), in_memory(x))
    for a, b in zip((m for m in in_memory.modules() if hasattr(m, "_weight_bias")),
                    (m for m in reloaded.modules() if hasattr(m, "_weight_bias")), strict=True):
        wa, wb = a._weight_bias()[0], b._weight_bias()[0]
        assert torch.equal(wa.int_repr(), wb.int_repr()) and wa.q_scale() == wb.q_scale()


def test_int8_run_exports_to_onnx(wide) -> None:
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from liandan.export.onnx_export import to_onnx

    _, out, _ = wide
    entry = to_onnx(out, repeats=3)
    onnx.checker.check_model(onnx.load(entry["path"]))
    q = json.loads((out / "export" / "export.json").read_text())["model.onnx"]["quantized"]
    assert "dequantized" in q["note"]
    assert q["max_abs_diff_vs_int8"] <= q["tolerance"] == pytest.approx(0.05 * max(1.0, q["output_scale"]))
    print(f"ONNX vs int8 max |Δ| = {q['max_abs_diff_vs_int8']:.4g} (scale {q['output_scale']:.3g})")
