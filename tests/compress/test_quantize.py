"""Dynamic int8 quantisation: accuracy kept, size ~4x smaller, and the reloaded model is torch's
``quantize_dynamic`` of the float weights bit for bit (PyTorch as the oracle)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

import liandan
from liandan.compress import load_compressed, quantize
from liandan.compress.quantize import apply_quantization
from liandan.errors import LiandanError


def _torch_int8(model: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def test_quantize_measures_and_reloads_bit_for_bit(teacher, tmp_path) -> None:
    out = tmp_path / "int8"
    doc = quantize(teacher, out=out, repeats=5)
    assert json.loads((out / "compress.json").read_text()) == json.loads(json.dumps(doc))
    t = doc["test"]
    assert t["before"]["accuracy"] > 0.9
    assert abs(t["after"]["accuracy"] - t["before"]["accuracy"]) <= 0.01  # within one point
    assert t["before"]["accuracy"] == pytest.approx(liandan.load_run(teacher).summary["final"]["test"]["accuracy"])
    # 17k float32 weights -> int8 (+ per-tensor scale, zero point and packing overhead)
    assert doc["size_bytes"]["ratio"] > 3.0
    assert doc["params"]["before"] == doc["params"]["after"] == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    assert 0 < doc["max_abs_delta_output"] < 0.5
    assert doc["quantized_modules"] == ["DynamicQuantizedLinear"]
    for bs in ("batch1", "batch64"):
        lat = doc["latency"][bs]
        assert lat["before_ms"] > 0 and lat["after_ms"] > 0
        assert lat["ratio"] == pytest.approx(lat["before_ms"] / lat["after_ms"], rel=0.01)

    reloaded = load_compressed(out).model
    oracle = _torch_int8(liandan.load_run(teacher).model.eval())
    x = torch.randn(64, 8, 8)
    with torch.inference_mode():
        assert torch.equal(reloaded(x), oracle(x))
    assert not any(p.numel() for p in reloaded.parameters())  # every weight is packed int8


def test_int8_weights_follow_the_symmetric_formula() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 7), nn.ReLU(), nn.Linear(7, 3))
    q = apply_quantization(model, {"dtype": "qint8", "layers": ["linear"]})
    for f, ql in ((model[0], q[0]), (model[2], q[2])):
        w, qw = f.weight.detach(), ql.weight()
        s = float(w.abs().max()) / 127.5  # Jacob et al. 2018 with torch's symmetric min/max observer
        assert qw.q_scale() == pytest.approx(s, rel=1e-6) and qw.q_zero_point() == 0
        assert torch.equal(qw.int_repr(), torch.quantize_per_tensor(w, qw.q_scale(), 0, torch.qint8).int_repr())
        by_hand = torch.clamp(torch.round(w.double() / s), -128, 127)
        assert (qw.int_repr().double() - by_hand).abs().max() <= 1  # ties at ±127.5 may round either way
    assert model[0].weight.dtype == torch.float32  # the original is untouched


def test_float16_and_recurrent_layers() -> None:
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 8, batch_first=True)
    q = apply_quantization(nn.Sequential(lstm), {"dtype": "qint8", "layers": ["lstm"]})
    x = torch.randn(2, 5, 4)
    with torch.inference_mode():
        assert (q[0](x)[0] - lstm(x)[0]).abs().max() < 0.05
    h = apply_quantization(nn.Sequential(nn.Linear(4, 2)), {"dtype": "float16", "layers": ["linear"]})
    assert "DynamicQuantizedLinear" in h[0]._get_name()


@pytest.mark.parametrize("params, match", [
    ({"layers": ["linear"]}, "has no nn.Linear layer to quantize"),
    ({"dtype": "int4"}, "unknown quantisation dtype 'int4'"),
    ({"layers": ["conv"]}, "unknown layer kind 'conv'"),
])
def test_bad_quantisation_requests(params, match) -> None:
    with pytest.raises(LiandanError, match=match):
        apply_quantization(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), params)
