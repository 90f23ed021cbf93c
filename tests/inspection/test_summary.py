"""liandan.inspection.summary and `liandan summary`: counts, formulas, memory, latency, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from liandan.errors import LiandanError
from liandan.inspection import summary
from liandan.registry import MODELS, Entry

IMAGE = [e for e in MODELS.entries() if e.extra.get("input_kind", "image") == "image"]


@pytest.mark.parametrize("entry", IMAGE, ids=[e.name for e in IMAGE])
def test_summary_of_every_model_matches_formulas(entry: Entry) -> None:
    opts = {"num_classes": 10} if "num_classes" in entry.options() else {}
    s = summary(entry.name, (1, 3, 32, 32), latency_runs=0, **opts)
    assert s.params > 0
    assert s.params == sum(i.params for i in s.layers)  # every parameter sits in exactly one row
    assert s.macs > 0 and s.flops == 2 * s.macs
    assert s.mismatches() == []
    assert any(i.formula_macs for i in s.layers)
    assert s.activation_bytes > 0 and s.param_bytes == 4 * s.params


def test_hand_computed_conv_and_linear() -> None:
    m = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),  # (3·3·3 + 1)·8 = 224 params; out 16×16
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),  # depthwise: 3·3·1·8 = 72
        nn.Flatten(),
        nn.Linear(8 * 16 * 16, 10),  # (2048 + 1)·10 = 20,490
    )
    s = summary(m, (2, 3, 32, 32), latency_runs=0)
    by = {i.name: i for i in s.layers}
    assert (by["0"].params, by["0"].macs) == (224, 2 * 16 * 16 * 8 * 3 * 3 * 3)
    assert (by["1"].params, by["1"].macs) == (72, 2 * 16 * 16 * 8 * 3 * 3 * 1)
    assert (by["3"].params, by["3"].macs) == (20_490, 2 * 2048 * 10)
    assert by["0"].output_shape == [2, 8, 16, 16]
    assert s.params == 224 + 72 + 20_490
    assert s.macs == 110_592 + 36_864 + 40_960
    # FlopCounterMode is the oracle for the total
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        m(torch.randn(2, 3, 32, 32))
    assert s.flops == counter.get_total_flops()


@pytest.mark.parametrize(("name", "layer", "params"), [
    ("lenet5", "features.0", 156), ("lenet5", "features.3", 2_416), ("alexnet", "features.0", 23_296),
    ("vgg16", "features.0", 1_792), ("resnet18", "conv1", 9_408),
])
def test_reference_layer_counts(name: str, layer: str, params: int) -> None:
    s = summary(name, device="meta")  # reference input, no memory: fast even for VGG-16
    assert s.latency_ms is None
    assert s.layer(layer).params == s.layer(layer).formula_params == params


def test_explain_fills_in_the_numbers() -> None:
    s = summary("resnet18", device="meta")
    text = s.explain("layer4.0.conv1")
    assert "(3·3·256/1 + 0)·512 = 1,179,648" in text
    assert "⌊(14 + 2·1 − 1·2 − 1)/2⌋ + 1 = 7" in text
    assert "= 1·7·7·512·3·3·256/1 = 57,802,752" in text
    assert "FLOPs = 2·MACs = 115,605,504" in text
    assert "✓" in text and "MISMATCH" not in text
    fc = s.explain("fc")
    assert "(512 + 1)·1000 = 513,000" in fc and "1·512·1000 = 512,000" in fc
    assert "2·64 = 128" in s.explain("bn1")
    with pytest.raises(LiandanError, match="did you mean 'layer4.0.conv2'"):
        s.explain("layer4.0.convv2")


def test_any_module_batch_memory_and_latency() -> None:
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=True), nn.Linear(8, 3), nn.ReLU())
    m.train()
    s1 = summary(m, (1, 4), latency_runs=3)
    s2 = summary(m, (2, 4), latency_runs=0)
    assert m.training  # the caller's mode is restored
    assert s2.macs == 2 * s1.macs == 2 * (4 * 8 + 8 * 3)
    # outputs: 2·8 floats (Linear) + 0 (in-place ReLU reuses them) + 2·3 + 2·3 (out-of-place ReLU)
    assert s2.activation_bytes == 4 * (16 + 6 + 6)
    assert s1.latency_ms is not None and s1.latency_ms > 0 and 1 <= s1.latency_runs <= 3
    m[0].weight.requires_grad_(False)
    assert summary(m, (1, 4), latency_runs=0).trainable_params == s1.params - 32
    with pytest.raises(LiandanError, match="needs input_shape"):
        summary(m)
    with pytest.raises(LiandanError, match="forward of Sequential on input"):
        summary(m, (1, 5), latency_runs=0)


def test_meta_equals_cpu_and_leaves_the_callers_model_alone() -> None:
    m = MODELS.get("mobilenet_v2").fn(num_classes=10, input_shape=(3, 32, 32))
    cpu = summary(m, (1, 3, 32, 32), latency_runs=0)
    meta = summary(m, (1, 3, 32, 32), device="meta")
    assert (cpu.params, cpu.macs, cpu.activation_bytes) == (meta.params, meta.macs, meta.activation_bytes)
    assert next(m.parameters()).device.type == "cpu"


def test_weight_normed_model_counts_g() -> None:
    from liandan.models._wrappers import apply_weight_norm

    m = apply_weight_norm(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)), "weight")
    s = summary(m, (1, 3, 8, 8), latency_runs=0)
    assert s.params == (3 * 9 + 1) * 4 + 4 + (144 + 1) * 2 + 2
    assert [i.name for i in s.layers if i.params] == ["0", "2"]  # g and v are counted with their layer
    assert s.mismatches() == []


def test_table_and_json_dict() -> None:
    s = summary("lenet5", latency_runs=1)
    text = str(s)
    assert "features.0" in text and "Conv2d" in text and "61,706" in text and "FLOPs = 2·MACs" in text
    d = s.to_dict()
    json.dumps(d)
    assert d["macs"] == 416_520 and d["flops"] == 833_040 and d["params"] == 61_706


def test_cli_summary_json_and_explain(cli) -> None:
    rc, out, _ = cli("summary", "resnet18", "--input-shape", "2,3,32,32", "--set", "num_classes=10",
                     "--set", "norm=group", "--json", "--explain", "conv1")
    assert rc == 0
    doc = json.loads(out)
    for key in ("params", "trainable_params", "macs", "flops", "param_bytes", "activation_bytes",
                "latency_ms", "layers"):
        assert key in doc
    assert doc["input_shape"] == [2, 3, 32, 32] and doc["flops"] == 2 * doc["macs"]
    assert doc["layers"][0]["name"] == "conv1" and doc["layers"][1]["type"] == "GroupNorm"
    assert "(3·3·3/1 + 0)·64 = 1,728" in doc["explain"]["text"]
    rc, out, _ = cli("summary", "vgg16", "--device", "meta")
    assert rc == 0 and "138,357,544" in out
    # a builder's own input_shape option (one sample) sets the input at batch 1
    rc, out, _ = cli("summary", "mlp", "--set", "num_classes=3", "--set", "input_shape=[64]", "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["input_shape"] == [1, 64] and doc["params"] == (64 + 1) * 128 + (128 + 1) * 64 + 65 * 3


@pytest.mark.parametrize(("args", "message"), [
    (["summary", "resnet19"], "did you mean 'resnet18'"),
    (["summary", "resnet18", "--set", "nrom=batch"], "unknown option 'nrom'"),
    (["summary", "resnet18", "--set", "norm=weird"], "model.norm"),
    (["summary", "resnet18", "--set", "norm"], "expected key=value"),
    (["summary", "resnet18", "--input-shape", "1,3,a"], "--input-shape"),
    (["summary", "resnet18", "--device", "meta", "--explain", "nope"], "no layer 'nope'"),
    (["summary", "resnet18", "--device", "meta", "--input-shape", "1,4,32,32", "--set", "in_channels=3"],
     "forward of resnet18"),
    (["summary", "mlp"], "needs option 'num_classes'"),
    (["summary", "mlp", "--set", "num_classes=3", "--set", "input_shape=[64]", "--input-shape", "2,65"],
     "disagrees with --input-shape"),
])
def test_cli_user_errors(args: list[str], message: str, cli) -> None:
    rc, out, err = cli(*args)
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
