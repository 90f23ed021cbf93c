"""PEFT adapters: peft is the oracle (LoRA, VeRA bit-identical on LLaMA Linear and GPT-2 Conv1D),
and every registered adapter starts from the base model exactly, trains only itself, and merges."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from liandan.adapters import (
    adapter_layers,
    adapter_state_dict,
    apply_adapter,
    merge_adapter,
    merged_copy,
    trainable_parameters,
)
from liandan.adapters.dylora import set_rank
from liandan.errors import LiandanError
from liandan.registry import ADAPTERS

from .conftest import lm_steps

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

LLAMA_TARGETS, GPT2_TARGETS = ["q_proj", "v_proj", "up_proj"], ["c_attn", "c_fc"]
QUANT_ERROR = 0.1  # max |Δlogit| of a 4-bit base (tag "quantized") vs the float one; measured ≤ 0.054


def _llama():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=256)
    return transformers.LlamaForCausalLM(cfg).eval(), LLAMA_TARGETS


def _gpt2():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=256, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg).eval(), GPT2_TARGETS


BASES = {"llama": _llama, "gpt2": _gpt2}
IDS = torch.randint(0, 256, (3, 12), generator=torch.Generator().manual_seed(0))


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def _pairs(ref, ours, has: str):
    theirs = sorted((n, m) for n, m in ref.named_modules() if isinstance(getattr(m, has, None), torch.nn.Module))
    mine = sorted(adapter_layers(ours))
    assert len(theirs) == len(mine) > 0
    return [(t, m) for (_, t), (_, m) in zip(theirs, mine, strict=True)]


@pytest.mark.parametrize("base", BASES)
def test_lora_equals_peft(base):
    """Same A and B → the same logits as peft's LoRA, to the bit; the same trainable count."""
    model, targets = BASES[base]()
    ref = peft.get_peft_model(copy.deepcopy(model), peft.LoraConfig(r=8, lora_alpha=16, target_modules=targets)).eval()
    ours = apply_adapter(copy.deepcopy(model), ADAPTERS.get("lora").fn(r=8, alpha=16, targets=targets)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t, m in _pairs(ref, ours, "lora_A"):
            m.lora_A.copy_(torch.randn(m.lora_A.shape, generator=g))
            m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g))
            t.lora_A["default"].weight.copy_(m.lora_A)
            t.lora_B["default"].weight.copy_(m.lora_B)
    assert torch.equal(_logits(ref), _logits(ours))
    assert trainable_parameters(ours)[0] == sum(p.numel() for p in ref.parameters() if p.requires_grad)
    assert trainable_parameters(ours)[0] == {"llama": 6_656, "gpt2": 9_216}[base]  # the reference's counts


@pytest.mark.parametrize("base", BASES)
def test_vera_equals_peft(base):
    """Given peft's shared random projections and the same scaling vectors, VeRA's logits are peft's."""
    model, targets = BASES[base]()
    ref = peft.get_peft_model(copy.deepcopy(model), peft.VeraConfig(r=32, target_modules=targets)).eval()
    ours = apply_adapter(copy.deepcopy(model), ADAPTERS.get("vera").fn(r=32, targets=targets)).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for t, m in _pairs(ref, ours, "vera_lambda_b"):
            m.vera_A.copy_(t.vera_A["default"][:, : m.vera_A.shape[1]])
            m.vera_B.copy_(t.vera_B["default"][: m.vera_B.shape[0], :])
            m.lambda_d.copy_(torch.randn(m.lambda_d.shape, generator=g))
            m.lambda_b.copy_(torch.randn(m.lambda_b.shape, generator=g))
            t.vera_lambda_d["default"].copy_(m.lambda_d)
            t.vera_lambda_b["default"].copy_(m.lambda_b)
    assert torch.equal(_logits(ref), _logits(ours))
    assert trainable_parameters(ours)[0] == sum(p.numel() for p in ref.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", [n for n in ADAPTERS.names() if "prompt" not in ADAPTERS.get(n).tags])
@pytest.mark.parametrize("base", BASES)
def test_adapter_contract(name, base):
    """Starts from the base exactly; only adapter tensors train; a step lowers the loss; merging into
    the base weights gives the same function as a plain model of the base class."""
    model, targets = BASES[base]()
    before = _logits(model)
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    ours = apply_adapter(model, ADAPTERS.get(name).fn(targets=targets, **({"r": 8} if name != "vera" else {})))
    quantized = "quantized" in ADAPTERS.get(name).tags  # the base itself is stored in 4 bits (QLoRA, QA-LoRA)
    if quantized:  # "starts from the base exactly" means the dequantised base; close to the float one
        start = _logits(merged_copy(ours))
        assert 0 < (start - before).abs().max() < QUANT_ERROR
        before = start
    assert torch.equal(_logits(ours), before)  # zero-initialised update
    bases = {n: {k: v.clone() for k, v in m.base.state_dict().items()} for n, m in adapter_layers(ours)}
    trainable = adapter_state_dict(ours)
    assert trainable and sum(v.numel() for v in trainable.values()) == trainable_parameters(ours)[0]
    lr = 5e-2 if name == "vera" else 1e-2  # VeRA trains scaling vectors: the paper uses larger rates
    losses = lm_steps(ours, IDS, lr)
    assert losses[-1] < losses[0]
    adapted = _logits(ours)
    assert not torch.equal(adapted, before)
    for layer_name, layer in adapter_layers(ours):  # base weights (or 4-bit codes) untouched by training
        assert all(torch.equal(v, bases[layer_name][k]) for k, v in layer.base.state_dict().items())
        assert quantized or torch.equal(layer.base.weight, frozen[f"{layer_name}.weight"])
    plain = merge_adapter(ours)
    assert not adapter_layers(plain)
    assert set(plain.state_dict()) == set(frozen) or name == "qalora"  # a merged QA-LoRA stays INT4
    assert (_logits(plain) - adapted).abs().max() < 1e-4


def test_dylora_serves_every_rank():
    """Training draws one rank per forward for all layers; evaluation serves the chosen rank, and at
    rank b the layer is exactly a LoRA of rank b made of the leading slices (scale α/r)."""
    model, targets = _llama()
    ours = apply_adapter(model, ADAPTERS.get("dylora").fn(r=8, alpha=16, targets=targets, seed=3))
    layers = [m for _, m in adapter_layers(ours)]
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for m in layers:
            m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g))
    ours.train()
    seen = set()
    for _ in range(40):
        ours(input_ids=IDS[:1])
        ranks = {m.active_rank for m in layers}
        assert len(ranks) == 1  # one rank for the whole model per step
        seen |= ranks
    assert seen == set(range(1, 9))
    ours.eval()
    set_rank(ours, 3)
    x = torch.randn(5, 64)
    m = layers[0]
    ours(input_ids=IDS[:1])
    expect = m.base(x) + x @ m.lora_A[:3].T @ m.lora_B[:, :3].T * (16 / 8)
    assert m.active_rank == 3 and torch.allclose(m(x), expect, atol=1e-6)
    with pytest.raises(ValueError):
        set_rank(ours, 9)


def test_bad_targets():
    model, _ = _llama()
    with pytest.raises(LiandanError, match="none of .* names a layer"):
        apply_adapter(model, ADAPTERS.get("lora").fn(targets=["nope"]))
    with pytest.raises(LiandanError, match="adapters wrap Linear"):
        apply_adapter(_llama()[0], ADAPTERS.get("lora").fn(targets=["embed_tokens"]))
    with pytest.raises(LiandanError, match="eval_rank"):
        ADAPTERS.get("dylora").fn(r=4, eval_rank=5)
