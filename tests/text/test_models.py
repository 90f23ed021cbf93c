"""Token models (registry-driven over input_kind "tokens") with the tasks they serve: shapes,
backward, a few steps lower the loss, weights and Hugging Face round trips, base sizes."""

from __future__ import annotations

import pytest
import torch

from liandan.data.tokenize import NUM_SPECIAL
from liandan.registry import MODELS
from liandan.training import checkpoint as ck
from liandan.training.tasks.language import token_loss

TOKENS = [e for e in MODELS.entries() if e.extra.get("input_kind") == "tokens"]
PAIRS = [(e.name, t) for e in TOKENS for t in e.extra["tasks"]]
SMALL = {"layers": 1, "dim": 32, "heads": 2}
V, T = 40, 12


def _batch(task: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable toy problem per task: copy the input (lm/mlm) or tell two token ranges apart."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(NUM_SPECIAL, V, (16, T), generator=g)
    if task == "classify":
        y = torch.randint(0, 2, (16,), generator=g)
        x = torch.where(y[:, None] == 1, x.clamp(max=20), x.clamp(min=21))
        return x, y
    return x, x.clone()


def _build(name: str, task: str, **kw):
    entry = MODELS.get(name)
    opts = {"vocab_size": V, "max_len": T, **SMALL, **kw}
    if "task" in entry.options():
        opts["task"] = task
    torch.manual_seed(0)
    return entry.fn(**opts)


def _loss(model, task: str, x, y) -> torch.Tensor:
    out = model(x)
    return torch.nn.functional.cross_entropy(out, y) if task == "classify" else token_loss(out, y)


@pytest.mark.parametrize(("name", "task"), PAIRS)
def test_forward_backward_and_few_steps_lower_the_loss(name: str, task: str) -> None:
    model = _build(name, task)
    x, y = _batch(task)
    out = model(x)
    assert out.shape == ((16, 2) if task == "classify" else (16, T, V))  # (B, K) or (B, T, V)
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    first = None
    for _ in range(15):
        loss = _loss(model, task, x, y)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
        opt.step()
    assert float(loss.detach()) < 0.8 * first, (first, float(loss.detach()))


@pytest.mark.parametrize(("name", "task"), PAIRS)
def test_weights_and_hf_round_trip(name: str, task: str, tmp_path) -> None:
    model = _build(name, task).eval()
    x, _ = _batch(task)
    ck.save_weights(model, tmp_path / "w.safetensors")
    other = _build(name, task).eval()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1)
    ck.load_weights(other, tmp_path / "w.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(other(x), model(x))
        model.save_pretrained(tmp_path / "hf")  # the Hugging Face format reloads without liandan
        hf = type(model.hf).from_pretrained(tmp_path / "hf").eval()
        kw = {"attention_mask": (x != 0).long()} if model.needs_mask else {}
        torch.testing.assert_close(hf(input_ids=x, **kw).logits, model(x))


def test_causal_models_do_not_see_the_future() -> None:
    for style in ("gpt2", "llama"):
        model = _build("gpt", "lm", style=style).eval()
        x, _ = _batch("lm")
        x2 = x.clone()
        x2[:, 7:] = NUM_SPECIAL  # change the future only
        with torch.no_grad():
            torch.testing.assert_close(model(x)[:, :7], model(x2)[:, :7])


def test_bert_ignores_padding() -> None:
    model = _build("bert", "mlm").eval()
    x, _ = _batch("mlm")
    x[:, 8:] = 0  # 4 padding tokens; the same rows with 2 must give the same logits for the real ones
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:, :8], model(x[:, :10])[:, :8], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("entry", TOKENS, ids=lambda e: e.name)
def test_base_parameter_count(entry) -> None:
    """GPT-2 small: 124,439,808 (tied embeddings); BERT-base's BertModel with pooler: 109,482,240."""
    with torch.device("meta"):
        model = entry.fn(**entry.extra["ref_options"])
    module = model
    for part in entry.extra.get("ref_module", "").split(".") if entry.extra.get("ref_module") else []:
        module = getattr(module, part)
    assert sum(p.numel() for p in module.parameters()) == entry.extra["ref_params"]


def test_llama_style_and_sizes() -> None:
    from transformers import LlamaForCausalLM

    from liandan.models.hf_text import gpt

    with torch.device("meta"):
        m = gpt(style="llama", size="base", vocab_size=32000, max_len=2048)
    assert isinstance(m.hf, LlamaForCausalLM) and m.hf.config.num_hidden_layers == 12 and m.max_len == 2048


def test_summary_feeds_token_ids() -> None:
    import liandan

    s = liandan.summary("gpt", latency_runs=0, vocab_size=V, max_len=128, layers=2, dim=64, heads=2)
    assert s.input_shape == [1, 128] and s.params == 2 * (12 * 64**2 + 13 * 64) + (V + 128) * 64 + 2 * 64
    # per token: the blocks' 12·d² weights and the tied V×d head (the summary counts layers, not the
    # attention products inside scaled_dot_product_attention)
    assert s.macs == 128 * (2 * 12 * 64**2 + V * 64)


@pytest.mark.parametrize(("name", "task"), PAIRS)
def test_cpu_sizes_init_at_one_over_root_width(name: str, task: str) -> None:
    """Base sizes keep the published N(0, 0.02); CPU sizes draw linear weights at 1/√width (a gain
    near one per map), measured on the first attention block's query/key/value weights."""
    model = _build(name, task, dim=64, heads=4)
    names = ("query", "c_attn")  # BERT, GPT-2
    qkv = [p for n, p in model.named_parameters() if p.dim() == 2 and any(k in n for k in names)]
    assert qkv and float(qkv[0].detach().std()) == pytest.approx(64**-0.5, rel=0.1)
    with torch.device("meta"):
        base = MODELS.get(name).fn(**MODELS.get(name).extra["ref_options"])
    assert base.hf.config.initializer_range == 0.02
