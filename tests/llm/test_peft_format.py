"""peft's adapter format, both ways: a liandan adapter saved with save_peft_adapter loads in
``peft.PeftModel.from_pretrained`` with liandan's logits, and a peft-trained adapter
(``save_pretrained``) loads with load_peft_adapter with peft's logits, for LoRA, rsLoRA, VeRA,
prompt tuning, prefix tuning and P-Tuning v2 on LLaMA (Linear) and GPT-2 (Conv1D). The same both ways on
from_pretrained LLaMA, Qwen2, GPT-2 and a BERT classifier (its head as modules_to_save), with all-linear
targets and merging: test_adapters_hf.py."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch

from liandan.adapters import (
    adapter_layers,
    apply_adapter,
    load_peft_adapter,
    model_adapters,
    save_peft_adapter,
    trainable_parameters,
)
from liandan.adapters.inject import ADAPTER_MARK, MODEL_ADAPTER_MARK
from liandan.errors import LiandanError
from liandan.registry import ADAPTERS

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

TOL = 1e-5
N = 5
TARGETS = {"llama": ["q_proj", "v_proj", "up_proj"], "gpt2": ["c_attn", "c_fc"]}
IDS = torch.randint(3, 256, (3, 12), generator=torch.Generator().manual_seed(0))
MASK = torch.tensor([[1] * 12, [1] * 8 + [0] * 4, [1] * 5 + [0] * 7])  # right padding


def _llama(hidden: int = 64):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=hidden, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, vocab_size=256)
    return transformers.LlamaForCausalLM(cfg).eval()


def _gpt2():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=256, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg).eval()


BASES = {"llama": _llama, "gpt2": _gpt2}
SHIFT = {"num_virtual_tokens": N, "positions": "shift"}  # peft's positions: the real tokens after the virtual ones
# case: (liandan method, its options, peft's config for targets t)
CASES = {
    "lora": ("lora", {"r": 4, "alpha": 8}, lambda t: peft.LoraConfig(r=4, lora_alpha=8, target_modules=t)),
    "rslora": ("lora", {"r": 4, "alpha": 8, "rslora": True},
               lambda t: peft.LoraConfig(r=4, lora_alpha=8, use_rslora=True, target_modules=t)),
    "vera": ("vera", {"r": 16}, lambda t: peft.VeraConfig(r=16, target_modules=t)),
    "prompt_tuning": ("prompt_tuning", SHIFT,
                      lambda t: peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=N)),
    "prefix_tuning": ("prefix_tuning", SHIFT, lambda t: peft.PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=N, prefix_projection=True)),
    "p_tuning_v2": ("p_tuning_v2", SHIFT,
                    lambda t: peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=N)),
}
MAX_DELTA: dict[tuple[str, str, str], float] = {}  # (direction, case, base) -> max |Δlogit| (printed with -s)


def _ours(base: str, case: str, model=None):
    method, options, _ = CASES[case]
    options = {**options, **({"targets": TARGETS[base]} if "num_virtual_tokens" not in options else {})}
    return apply_adapter(model if model is not None else BASES[base](), ADAPTERS.get(method).fn(**options)).eval()


@torch.no_grad()
def _perturb(model, seed: int = 1) -> None:
    """Non-trivial adapter weights (B ≠ 0, λ_b ≠ 0, prompts off their init), as after training."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.requires_grad:
            p.add_(torch.randn(p.shape, generator=g) * 0.3)


@torch.no_grad()
def _delta(a, b) -> float:
    """max |Δlogit| over the real positions, without and with a padding mask (peft's prompt tuning
    returns its n virtual positions too: the last T are the real ones)."""
    worst = 0.0
    for mask in (None, MASK):
        x = a(input_ids=IDS, attention_mask=mask).logits[:, -IDS.shape[1]:]
        y = b(input_ids=IDS, attention_mask=mask).logits[:, -IDS.shape[1]:]
        real = torch.ones_like(IDS, dtype=torch.bool) if mask is None else mask.bool()
        worst = max(worst, (x - y)[real].abs().max().item())
    return worst


def _method(model) -> str:
    (name,) = {getattr(m, ADAPTER_MARK) for _, m in adapter_layers(model)} | {
        getattr(m, MODEL_ADAPTER_MARK) for _, m in model_adapters(model)}
    return name


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("base", BASES)
def test_liandan_to_peft(base, case, tmp_path):
    """save_peft_adapter → PeftModel.from_pretrained(fresh base): liandan's logits; and back."""
    ours = _ours(base, case)
    _perturb(ours)
    save_peft_adapter(ours, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"adapter_config.json", "adapter_model.safetensors"}
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == {"lora": "LORA", "rslora": "LORA", "vera": "VERA", "prompt_tuning": "PROMPT_TUNING"
                                   }.get(case, "PREFIX_TUNING")
    if case in ("lora", "rslora", "vera"):  # peft's short target names; GPT-2's Conv1D is fan_in_fan_out
        assert config["target_modules"] == sorted(TARGETS[base]) and config["fan_in_fan_out"] == (base == "gpt2")
    ref = peft.PeftModel.from_pretrained(BASES[base](), tmp_path).eval()
    assert type(ref.peft_config["default"]).__name__ == type(CASES[case][2](TARGETS[base])).__name__
    MAX_DELTA["liandan→peft", case, base] = d = _delta(ours, ref)
    assert d < TOL
    assert _delta(ours, BASES[base]()) > 1e-2  # the adapter matters: not a comparison of two base models
    back = load_peft_adapter(BASES[base](), tmp_path).eval()  # and into liandan again: the same model
    assert _method(back) == CASES[case][0] and _delta(ours, back) < TOL
    assert trainable_parameters(back)[0] == sum(p.numel() for p in back.parameters() if p.requires_grad) > 0


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("base", BASES)
def test_peft_to_liandan(base, case, tmp_path):
    """A peft adapter with trained-like weights, save_pretrained → load_peft_adapter: peft's logits."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft: fan_in_fan_out set for Conv1D
        ref = peft.get_peft_model(BASES[base](), CASES[case][2](TARGETS[base])).eval()
    _perturb(ref, seed=2)
    ref.save_pretrained(tmp_path)
    ours = load_peft_adapter(BASES[base](), tmp_path).eval()
    MAX_DELTA["peft→liandan", case, base] = d = _delta(ours, ref)
    assert d < TOL
    assert _delta(ours, BASES[base]()) > 1e-2  # the adapter matters: not a comparison of two base models
    assert _method(ours) == CASES[case][0]
    if case not in ("prefix_tuning",):  # peft's file holds the MLP's output, not the MLP: fewer numbers
        assert trainable_parameters(ours)[0] == sum(p.numel() for p in ref.parameters() if p.requires_grad)


def test_peft_vera_without_projection(tmp_path):
    """save_projection false: the file has no A, B; liandan's seed draws peft's projection_prng_key's."""
    ref = peft.get_peft_model(_llama(), peft.VeraConfig(r=16, target_modules=TARGETS["llama"], save_projection=False,
                                                        projection_prng_key=3)).eval()
    _perturb(ref)
    ref.save_pretrained(tmp_path)
    assert _delta(load_peft_adapter(_llama(), tmp_path).eval(), ref) < TOL


def test_rank_and_alpha_patterns(tmp_path):
    """peft's rank_pattern / alpha_pattern load per layer, and are written back for peft."""
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS["llama"], rank_pattern={"v_proj": 2},
                             alpha_pattern={"up_proj": 3})
    ref = peft.get_peft_model(_llama(), config).eval()
    _perturb(ref)
    ref.save_pretrained(tmp_path / "peft")
    ours = load_peft_adapter(_llama(), tmp_path / "peft").eval()
    assert _delta(ours, ref) < TOL
    assert {m.r for n, m in adapter_layers(ours) if n.endswith("v_proj")} == {2}
    save_peft_adapter(ours, tmp_path / "ours")
    assert _delta(peft.PeftModel.from_pretrained(_llama(), tmp_path / "ours").eval(), ref) < TOL


def test_one_layer_target(tmp_path):
    """Targets that the short names would over-match are written as full module paths."""
    ours = apply_adapter(_gpt2(), ADAPTERS.get("lora").fn(r=4, targets=["h.1.attn.c_attn"])).eval()
    _perturb(ours)
    save_peft_adapter(ours, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["target_modules"] == ["transformer.h.1.attn.c_attn"]
    assert _delta(ours, peft.PeftModel.from_pretrained(_gpt2(), tmp_path).eval()) < TOL


def test_liandan_gpt_model(tmp_path):
    """liandan's gpt model keeps the Hugging Face model as .hf: peft's keys name the modules inside it."""
    from liandan.models.hf_text import gpt

    torch.manual_seed(0)
    model = gpt(vocab_size=256, style="llama", layers=2, dim=32, heads=2).eval()
    fresh = copy.deepcopy(model)
    apply_adapter(model, ADAPTERS.get("lora").fn(r=4, targets=["q_proj", "v_proj"]))
    _perturb(model)
    save_peft_adapter(model, tmp_path)
    from safetensors.torch import load_file

    keys = load_file(tmp_path / "adapter_model.safetensors")
    assert all(k.startswith("base_model.model.model.layers.") for k in keys)  # no "hf."
    ref = peft.PeftModel.from_pretrained(copy.deepcopy(fresh.hf), tmp_path).eval()
    with torch.no_grad():
        assert (model(IDS) - ref(input_ids=IDS).logits).abs().max() < TOL
        assert (load_peft_adapter(fresh, tmp_path).eval()(IDS) - model(IDS)).abs().max() < TOL


def test_qlora_writes_lora(tmp_path):
    """QLoRA saves as peft's LoRA (peft's QLoRA: LoRA over a 4-bit base): on a float base the logits
    differ by the NF4 rounding only; it loads back onto an NF4 base with method qlora."""
    ours = apply_adapter(_llama(), ADAPTERS.get("qlora").fn(r=4, targets=TARGETS["llama"])).eval()
    _perturb(ours)
    save_peft_adapter(ours, tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["peft_type"] == "LORA"
    assert _delta(ours, peft.PeftModel.from_pretrained(_llama(), tmp_path).eval()) < 0.1  # quantisation error
    back = load_peft_adapter(_llama(), tmp_path, method="qlora").eval()
    assert _method(back) == "qlora" and _delta(ours, back) < TOL


@pytest.mark.parametrize("method", ["dylora", "qalora"])
def test_methods_peft_lacks(method, tmp_path):
    ours = apply_adapter(_llama(), ADAPTERS.get(method).fn(r=4, targets=TARGETS["llama"]))
    with pytest.raises(LiandanError, match=method):
        save_peft_adapter(ours, tmp_path)
    assert not (tmp_path / "adapter_config.json").exists()


def test_save_errors(tmp_path):
    with pytest.raises(LiandanError, match="no adapter"):
        save_peft_adapter(_llama(), tmp_path)
    keep = apply_adapter(_gpt2(), ADAPTERS.get("prompt_tuning").fn(num_virtual_tokens=N))  # GPT-2's auto: keep
    with pytest.raises(LiandanError, match="positions: shift"):
        save_peft_adapter(keep, tmp_path)


def _unchanged(model) -> bool:
    return not adapter_layers(model) and not model_adapters(model) and all(p.requires_grad for p in model.parameters())


def test_load_errors(tmp_path):
    """Unknown peft_type, another base's modules or shapes, options liandan lacks, no directory: one
    LiandanError each, and the model is left as it was."""
    with pytest.raises(LiandanError, match="adapter_config.json"):
        load_peft_adapter(_llama(), tmp_path / "none")
    ref = peft.get_peft_model(_llama(), peft.IA3Config(target_modules=["k_proj", "v_proj", "down_proj"],
                                                       feedforward_modules=["down_proj"]))
    ref.save_pretrained(tmp_path / "ia3")
    model = _llama()
    with pytest.raises(LiandanError, match="peft_type 'IA3'.*LORA, VERA, PROMPT_TUNING, PREFIX_TUNING"):
        load_peft_adapter(model, tmp_path / "ia3")
    lora = _ours("llama", "lora")
    save_peft_adapter(lora, tmp_path / "lora")
    gpt2 = _gpt2()
    with pytest.raises(LiandanError, match="has no module 'model.layers.0"):
        load_peft_adapter(gpt2, tmp_path / "lora")
    wide = _llama(hidden=32)
    with pytest.raises(LiandanError, match="do not fit"):
        load_peft_adapter(wide, tmp_path / "lora")
    with pytest.raises(LiandanError, match="loads as lora or qlora, not 'vera'"):
        load_peft_adapter(model, tmp_path / "lora", method="vera")
    peft.get_peft_model(_llama(), peft.LoraConfig(r=4, target_modules=["q_proj"], use_dora=True)).save_pretrained(
        tmp_path / "dora")
    with pytest.raises(LiandanError, match="use_dora"):
        load_peft_adapter(model, tmp_path / "dora")
    save_peft_adapter(_ours("llama", "prompt_tuning"), tmp_path / "prompt")
    with pytest.raises(LiandanError, match="do not fit"):
        load_peft_adapter(wide, tmp_path / "prompt")
    assert all(_unchanged(m) for m in (model, gpt2, wide))


def test_report_max_deltas():
    """Runs last in this file: print the max |Δlogit| of every case (pytest -s)."""
    for key, d in sorted(MAX_DELTA.items()):
        print(f"{' '.join(key):40s} {d:.2e}")
