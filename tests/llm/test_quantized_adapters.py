"""QLoRA (NF4 base) and QA-LoRA (INT4 base): the NF4 code against its definition and the published
table, quantisation errors within their bounds, real 4-bit storage, forward against plain torch, the
merge contrast (QA-LoRA stays INT4 and exact; QLoRA becomes float), and a fine-tune through the recipe."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load, load_file, save

import liandan
from liandan.adapters import adapter_layers, apply_adapter, merge_adapter
from liandan.adapters.qalora import Int4Linear, QALoraLinear
from liandan.adapters.qlora import NF4Linear, QLoraLinear
from liandan.adapters.qlora.nf4 import (
    DQ_BLOCK,
    DYNAMIC8,
    NF4,
    absmax_of,
    dequantize_nf4,
    max_gap,
    nf4_from_quantiles,
    quantize_nf4,
)
from liandan.registry import ADAPTERS
from liandan.training.run import load_run

transformers = pytest.importorskip("transformers")

# QLoRA appendix E / bitsandbytes get_4bit_type("nf4"), typed in independently of the module's constant
PUBLISHED_NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                 -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                 0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                 0.7229568362236023, 1.0]


def _weights(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 0.02  # ~ pretrained scale


def test_nf4_table():
    """16 values, sorted, exact 0 and ±1; the published table; and the construction from N(0, 1)
    quantiles: 8 positive Φ⁻¹(½ + (δ−½)·k/8) and 7 negative −Φ⁻¹(½ + (δ−½)·k/7), over Φ⁻¹(δ)."""
    assert NF4.shape == (16,) and torch.equal(NF4, torch.tensor(PUBLISHED_NF4))
    assert NF4[7] == 0 and NF4[0] == -1 and NF4[-1] == 1 and bool((NF4.diff() > 0).all())
    delta = torch.tensor(0.5 * ((1 - 1 / 30) + (1 - 1 / 32)), dtype=torch.float64)  # 0.9677083
    k8, k7 = torch.arange(1, 9, dtype=torch.float64), torch.arange(1, 8, dtype=torch.float64)
    pos = torch.special.ndtri(0.5 + (delta - 0.5) * k8 / 8) / torch.special.ndtri(delta)
    neg = -torch.special.ndtri(0.5 + (delta - 0.5) * k7 / 7) / torch.special.ndtri(delta)
    assert (NF4[8:].double() - pos).abs().max() < 1e-6 and (NF4[:7].double() - neg.flip(0)).abs().max() < 1e-6
    assert (nf4_from_quantiles() - NF4).abs().max() < 1e-6  # measured 3.6e-7 (float32 linspace as bitsandbytes)
    assert DYNAMIC8.shape == (256,) and DYNAMIC8.unique().numel() == 256 and DYNAMIC8.max() == 1 and 0 in DYNAMIC8


@pytest.mark.parametrize("double_quant", [False, True])
def test_nf4_error_within_bound(double_quant):
    """Each weight's error ≤ ½·(largest NF4 gap)·absmax of its block (+ the absmax's own error with
    double quantisation, itself ≤ ½·(largest 8-bit gap)·its block's max); the code is the nearest one."""
    w = _weights(300, 201)  # 60,300 values: 942.2 blocks of 64 (the padding is exercised)
    q = quantize_nf4(w, 64, double_quant)
    pad = -w.numel() % 64
    blocks = torch.cat([w.reshape(-1), w.new_zeros(pad)]).view(-1, 64)
    absmax = blocks.abs().amax(1)
    err = torch.cat([(dequantize_nf4(q, w.shape) - w).reshape(-1), w.new_zeros(pad)]).view(-1, 64).abs()
    if double_quant:
        a_hat = absmax_of(q)
        centred = absmax - absmax.mean()
        centred = torch.cat([centred, centred.new_zeros(-centred.numel() % DQ_BLOCK)]).view(-1, DQ_BLOCK)
        dq_bound = (0.5 * max_gap(DYNAMIC8) * centred.abs().amax(1)).repeat_interleave(DQ_BLOCK)[: absmax.numel()]
        assert ((a_hat - absmax).abs() <= dq_bound * (1 + 1e-5) + 1e-9).all()
        bound = 0.5 * max_gap(NF4) * absmax + (a_hat - absmax).abs()
    else:
        assert torch.equal(q["absmax"], absmax)
        bound = 0.5 * max_gap(NF4) * absmax
        best = (blocks.reshape(-1, 1) / absmax.repeat_interleave(64)[:, None] - NF4).abs().min(1).values
        assert torch.allclose(err.reshape(-1) / absmax.repeat_interleave(64), best, atol=1e-6)  # nearest code
    assert (err <= bound[:, None] * (1 + 1e-5) + 1e-9).all()
    assert float(err.sum() / w.abs().sum()) < 0.12  # mean |error| / mean |w|: measured ≈ 0.094


def test_int4_error_within_bound():
    """Group-wise min–max INT4: each weight within α/2; codes in 0..15; β = the group minimum."""
    lin = torch.nn.Linear(128, 40)
    q = Int4Linear(lin, 32)
    err = (q.dequantize() - lin.weight).abs().view(40, 4, 32)
    assert (err <= q.scales[..., None] / 2 * (1 + 1e-5)).all()
    assert q.codes().max() <= 15 and q.scales.shape == q.zeros.shape == (40, 4)
    assert torch.equal(q.zeros, lin.weight.detach().view(40, 4, 32).amin(-1))


def test_storage_is_4bit():
    """The state dict holds uint8 codes (two a byte) and constants, no float weight; it round-trips
    through safetensors; bytes per parameter 0.5625 (NF4), ≈ 0.516 (NF4 + DQ: 4.127 bits), 0.75 (INT4, g 32)."""
    lin = torch.nn.Linear(512, 256)
    n = lin.weight.numel()
    layers = {"nf4": NF4Linear(lin, 64, False), "nf4_dq": NF4Linear(lin, 64, True), "int4": Int4Linear(lin, 32)}
    assert layers["nf4"].qweight.dtype == torch.uint8 and layers["nf4"].qweight.numel() == n // 2
    assert layers["nf4"].bytes_per_param() == 0.5 + 4 / 64
    assert layers["nf4_dq"].bytes_per_param() == (n // 2 + n // 64 + 4 * (n // 64 // DQ_BLOCK) + 4) / n
    assert abs(layers["nf4_dq"].bytes_per_param() * 8 - (4 + 8 / 64 + 32 / (64 * 256))) < 1e-3
    assert layers["int4"].bytes_per_param() == 0.5 + 8 / 32
    for kind, layer in layers.items():
        sd = layer.state_dict()
        blob = save(sd)
        assert "weight" not in sd and len(blob) < (layer.bytes_per_param() * n + 256 * 4 + 1024)  # + bias, header
        fresh = Int4Linear(torch.nn.Linear(512, 256), 32) if kind == "int4" else \
            NF4Linear(torch.nn.Linear(512, 256), 64, layer.double_quant)
        fresh.load_state_dict(load(blob))
        assert torch.equal(fresh.dequantize(), layer.dequantize())


def _oracle_nf4(base: NF4Linear) -> torch.Tensor:
    """The dequantised (out, in) weight from the stored tensors, in plain torch."""
    p = base.qweight
    idx = torch.stack([p >> 4, p & 15], 1).reshape(-1).long()
    nb = idx.numel() // base.block
    if base.double_quant:
        absmax = DYNAMIC8[base.absmax_q.long()] * base.absmax_scale.repeat_interleave(DQ_BLOCK)[:nb] + base.absmax_mean
    else:
        absmax = base.absmax
    w = (NF4[idx].view(nb, base.block) * absmax[:, None]).reshape(-1)
    return w[: base.out_features * base.in_features].view(base.out_features, base.in_features)


@pytest.mark.parametrize("double_quant", [False, True])
@pytest.mark.parametrize("kind", ["linear", "conv1d"])
def test_qlora_forward_equals_dequantised_linear_plus_lora(kind, double_quant):
    """y = x·W̃ᵀ + b + (α/r)·x Aᵀ Bᵀ with W̃ dequantised from the stored codes; only A, B get gradients."""
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    base = torch.nn.Linear(96, 40) if kind == "linear" else Conv1D(40, 96)
    for p in base.parameters():
        p.requires_grad_(False)
    layer = QLoraLinear(base, r=4, alpha=8, block=64, double_quant=double_quant)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(3, 5, 96)
    w = _oracle_nf4(layer.base)
    expect = F.linear(x, w, base.bias) + (x @ layer.lora_A.T @ layer.lora_B.T) * 2.0
    y = layer(x)
    assert (y - expect).abs().max() < 1e-5
    y.sum().backward()
    assert layer.lora_A.grad is not None and layer.lora_B.grad is not None and base.bias.grad is None
    assert {n for n, p in layer.named_parameters() if p.requires_grad} == {"lora_A", "lora_B"}


def _llama():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=256)
    return transformers.LlamaForCausalLM(cfg).eval()


IDS = torch.randint(0, 256, (3, 12), generator=torch.Generator().manual_seed(0))


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def test_qalora_merges_into_int4_qlora_into_float():
    """QA-LoRA: the update is constant within each input group, merging changes only the zero points —
    codes and scales stay, the model stays INT4, same function (|Δ| < 1e-5). QLoRA: the merged layer is
    a float W̃ + ΔW (same function); putting it back on the NF4 grid would change the function."""
    targets = ["q_proj", "v_proj", "up_proj"]
    g = torch.Generator().manual_seed(1)
    ours = apply_adapter(_llama(), ADAPTERS.get("qalora").fn(r=4, group_size=16, targets=targets))
    for _, m in adapter_layers(ours):
        with torch.no_grad():
            m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g) * 0.05)
        dw = m.delta_weight().view(m.base.out_features, -1, 16)
        assert torch.equal(dw, dw[..., :1].expand_as(dw)) and m.lora_A.shape == (4, 64 // 16)
    layers = [m for _, m in adapter_layers(ours)]
    stored = [(m.base.qweight.clone(), m.base.scales.clone(), m.base.zeros.clone()) for m in layers]
    adapted = _logits(ours)
    merged = merge_adapter(ours)
    assert (_logits(merged) - adapted).abs().max() < 1e-5  # measured ≈ 1e-7
    bases = [m.base for m in layers]
    assert not adapter_layers(merged)
    assert sum(isinstance(m, Int4Linear) for m in merged.modules()) == len(layers) == 6
    for b, (codes, scales, zeros) in zip(bases, stored, strict=True):
        assert torch.equal(b.qweight, codes) and torch.equal(b.scales, scales) and not torch.equal(b.zeros, zeros)

    ours = apply_adapter(_llama(), ADAPTERS.get("qlora").fn(r=4, targets=targets))
    for _, m in adapter_layers(ours):
        with torch.no_grad():
            m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g) * 0.05)
    adapted = _logits(ours)
    merged = merge_adapter(ours)
    assert (_logits(merged) - adapted).abs().max() < 1e-5
    floats = [m for n, m in merged.named_modules() if n.rpartition(".")[2] in targets]
    assert len(floats) == 6 and all(type(m) is torch.nn.Linear and m.weight.dtype == torch.float32 for m in floats)
    assert not any(isinstance(m, NF4Linear) for m in merged.modules())
    for name in [n for n, m in merged.named_modules() if m in floats]:  # re-quantise the merged weight to NF4
        parent, _, attr = name.rpartition(".")
        setattr(merged.get_submodule(parent), attr, NF4Linear(merged.get_submodule(name)))
    assert (_logits(merged) - adapted).abs().max() > 1e-3  # the error QA-LoRA's merge avoids


def test_qalora_unmerge_and_group_check():
    layer = QALoraLinear(torch.nn.Linear(64, 8), r=2, alpha=4, group=32)
    with torch.no_grad():
        layer.lora_B.normal_()
    zeros = layer.base.zeros.clone()
    x = torch.randn(4, 64)
    y = layer(x)
    layer.merge()
    assert (layer(x) - y).abs().max() < 1e-5
    layer.unmerge()
    assert torch.allclose(layer.base.zeros, zeros, atol=1e-7) and (layer(x) - y).abs().max() < 1e-5
    with pytest.raises(liandan.LiandanError, match="group_size"):
        apply_adapter(_llama(), ADAPTERS.get("qalora").fn(group_size=48, targets=["q_proj"]))
    with pytest.raises(liandan.LiandanError, match="block_size"):
        ADAPTERS.get("qlora").fn(block_size=63)


# --- a fine-tune through the recipe, as tests/llm/test_finetune.py ------------------------------------------

FAST = ["doctor.enabled=false", "train.tensorboard=false", "report=false"]
MODEL = {"name": "gpt", "size": "tiny", "layers": 1, "dim": 32, "heads": 2}
LOSS_MARGIN = 0.05  # |test loss(QLoRA) − test loss(LoRA)|, same settings; measured ≈ 0.002 (of ≈ 2.73)


def _recipe(operators: str, **extra) -> dict:
    return {"name": f"arith{operators}", "seed": 0, "data": {"source": "arith", "n": 600, "operators": operators},
            "model": dict(MODEL), "optim": {"lr": 3e-3}, "train": {"epochs": 1}, **extra}


def test_quantized_fine_tune(tmp_path):
    """adapter {name: qlora, r: 4} trains through the recipe; the checkpoint holds the 4-bit base
    (uint8 codes, no float c_attn weight); load_run gives the same model; hf/ is a plain GPT-2 with the
    adapter merged; the test loss is within LOSS_MARGIN of LoRA's. QA-LoRA's hf/ is the merged INT4 model
    dequantised (merged_copy), so it loads as a plain GPT-2 too."""
    base = liandan.train(_recipe("+"), overrides=FAST, out=tmp_path / "base", quiet=True)
    runs = {}
    for name in ("lora", "qlora", "qalora"):
        rec = _recipe("-", adapter={"name": name, "r": 4})
        rec["model"]["from_run"] = str(base.dir)
        runs[name] = liandan.train(rec, overrides=FAST, out=tmp_path / name, quiet=True)
        assert runs[name].summary["status"] == "completed"
    assert runs["qlora"].summary["trainable_params"] == runs["lora"].summary["trainable_params"] == 4 * (32 + 96)
    assert runs["qalora"].summary["trainable_params"] == 4 * (32 // 32 + 96)
    ck = load_file(tmp_path / "qlora" / "checkpoints" / f"{runs['qlora'].summary['weights']}.safetensors")
    assert any(k.endswith("c_attn.base.qweight") and v.dtype == torch.uint8 for k, v in ck.items())
    assert not any(k.endswith("c_attn.base.weight") for k in ck)
    adapter = load_file(tmp_path / "qlora" / "adapter.safetensors")
    assert sorted(k.rsplit(".", 1)[-1] for k in adapter) == ["lora_A", "lora_B"]
    ids = torch.randint(3, 10, (2, 8))
    for name in ("qlora", "qalora"):
        loaded = load_run(tmp_path / name)
        hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / name / "hf").eval()
        with torch.no_grad():
            out = loaded.model(ids)
            assert torch.equal(out, runs[name].model.eval()(ids))
            assert (hf(input_ids=ids).logits - out).abs().max() < 1e-5
    losses = {n: r.summary["final"]["test"]["loss"] for n, r in runs.items()}
    assert abs(losses["qlora"] - losses["lora"]) < LOSS_MARGIN, losses
