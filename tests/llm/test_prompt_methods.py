"""Prompt-based PEFT (prompt tuning, prefix tuning, P-Tuning v2): peft is the oracle.

With the same prompt / prefix parameters the logits at the real positions are peft's; the
trainable counts are peft's; only the virtual tokens train; generation with the key/value cache
(which then starts with the prefix) equals generation without it; a recipe fine-tune works.
"""

from __future__ import annotations

import copy
import functools
import inspect
import sys
import warnings

import pytest
import torch

import liandan
from liandan.adapters import adapter_state_dict, apply_adapter, merge_adapter, merged_copy, trainable_parameters
from liandan.errors import LiandanError
from liandan.generation.text import sample_tokens
from liandan.registry import ADAPTERS

from .conftest import FAST, arith_recipe, lm_steps

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from liandan.models.hf_text import HFTokenModel  # noqa: E402  (needs transformers)

PROMPT_METHODS = [n for n in ADAPTERS.names() if "prompt" in ADAPTERS.get(n).tags]
N = 10


def _llama():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=256)
    return transformers.LlamaForCausalLM(cfg).eval()


def _gpt2(positions: int = 1024):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=256, bos_token_id=0, eos_token_id=0,
                                      n_positions=positions)
    return transformers.GPT2LMHeadModel(cfg).eval()


BASES = {"llama": _llama, "gpt2": _gpt2}
IDS = torch.randint(3, 256, (3, 12), generator=torch.Generator().manual_seed(0))
MASK = torch.tensor([[1] * 12, [1] * 8 + [0] * 4, [1] * 5 + [0] * 7])  # right padding

# (our options, peft's config); the same parameters give the same logits
PEFT = {
    "prompt_tuning": ({}, lambda: peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=N)),
    "p_tuning_v2": ({}, lambda: peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=N)),
    "prefix_tuning": ({}, lambda: peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=N,
                                                          prefix_projection=True)),
}
# peft 0.21.2's counts (the reference's measurements for prefix / prompt: LLaMA 1,280 / 640, GPT-2 2,560 / 640)
COUNTS = {("llama", "prompt_tuning"): 640, ("llama", "p_tuning_v2"): 1_280, ("llama", "prefix_tuning"): 5_600,
          ("gpt2", "prompt_tuning"): 640, ("gpt2", "p_tuning_v2"): 2_560, ("gpt2", "prefix_tuning"): 21_440}


def _ours(base, name: str, **options):
    return apply_adapter(base, ADAPTERS.get(name).fn(num_virtual_tokens=N, **options))


def _copy_into_peft(ours, ref) -> None:
    mine, theirs = ours.prompt_encoder, ref.prompt_encoder["default"]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        mine.embedding.copy_(torch.randn(mine.embedding.shape, generator=g) * 0.5)
        theirs.embedding.weight.copy_(mine.embedding)
        if getattr(mine, "transform", None) is not None:
            theirs.transform.load_state_dict(mine.transform.state_dict())


@pytest.mark.parametrize("name", PEFT)
@pytest.mark.parametrize("base", BASES)
def test_equals_peft(base, name):
    """peft's PromptTuningConfig / PrefixTuningConfig(prefix_projection=False, True) with our
    parameters: the same logits at the real positions, with and without a padding mask, and the
    same loss from labels; the same trainable count."""
    model = BASES[base]()
    options, config = PEFT[name]
    ref = peft.get_peft_model(copy.deepcopy(model), config()).eval()
    ours = _ours(copy.deepcopy(model), name, positions="shift", **options).eval()  # shift: peft's positions
    _copy_into_peft(ours, ref)
    with torch.no_grad():
        for mask in (None, MASK):
            theirs = ref(input_ids=IDS, attention_mask=mask).logits[:, -IDS.shape[1]:]  # prompt tuning: n + T
            mine = ours(input_ids=IDS, attention_mask=mask).logits
            assert mine.shape == (*IDS.shape, 256)
            real = torch.ones_like(IDS, dtype=torch.bool) if mask is None else mask.bool()
            assert (mine - theirs)[real].abs().max() < 1e-5
        # transformers' own loss from labels (prompt tuning: -100 under the virtual tokens, as peft)
        assert abs(ours(input_ids=IDS, labels=IDS).loss - ref(input_ids=IDS, labels=IDS).loss) < 1e-5
    assert trainable_parameters(ours)[0] == sum(p.numel() for p in ref.parameters() if p.requires_grad)
    assert trainable_parameters(ours)[0] == COUNTS[base, name]


def test_prefix_projection_width():
    """``hidden`` is peft's encoder_hidden_size: 64 on the tiny LLaMA gives the reference's 10,752."""
    ours = _ours(_llama(), "prefix_tuning", hidden=64)
    ref = peft.get_peft_model(_llama(), peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=N,
                                                                prefix_projection=True, encoder_hidden_size=64))
    assert trainable_parameters(ours)[0] == sum(p.numel() for p in ref.parameters() if p.requires_grad) == 10_752


@pytest.mark.parametrize("name", PROMPT_METHODS)
@pytest.mark.parametrize("base", BASES)
def test_prompt_contract(base, name):
    """Every prompt method: the base frozen, only its tensors train and a few steps lower the loss;
    padding does not change the real positions; a copy is independent; merging is refused."""
    model = BASES[base]()
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    ours = apply_adapter(model, ADAPTERS.get(name).fn(num_virtual_tokens=4))
    trainable = adapter_state_dict(ours)
    assert trainable and all(k.startswith("prompt_encoder.") for k in trainable)
    assert sum(v.numel() for v in trainable.values()) == trainable_parameters(ours)[0]
    losses = lm_steps(ours, IDS, 1e-2, use_cache=False)  # logits (B, T, V): the virtual positions dropped
    assert losses[-1] < losses[0]
    state = ours.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items())  # the base untouched
    with torch.no_grad():
        full = ours(input_ids=IDS).logits
        padded = ours(input_ids=IDS, attention_mask=MASK).logits
        alone = ours(input_ids=IDS[2:, :5]).logits  # row 2 without its padding
        twin = copy.deepcopy(ours)
        twin.prompt_encoder.embedding.add_(1.0)
        assert torch.equal(ours(input_ids=IDS).logits, full) and not torch.equal(twin(input_ids=IDS).logits, full)
    assert (padded[2, :5] - alone[0]).abs().max() < 1e-5
    assert (padded[MASK.bool()] - full[MASK.bool()]).abs().max() < 1e-5  # right padding: causal anyway
    with pytest.raises(LiandanError, match="virtual tokens"):  # exporters and RUN/hf/ refuse to drop them
        merged_copy(ours)
    with pytest.raises(LiandanError, match="nothing to merge"):
        merge_adapter(ours)


@pytest.mark.parametrize("name", PROMPT_METHODS)
@pytest.mark.parametrize("base", BASES)
def test_generation_with_cache(base, name):
    """Greedy decoding through ``decode_step`` (the cache starts with the virtual tokens) gives the
    tokens that re-reading the context gives, and transformers' own generate agrees: token for
    token, and every step's logits within 1e-4 of re-reading's. No warning about the deprecated
    ``past_key_values`` (transformers 5 takes ``cache``, and ignores the prefix if given both)."""
    model = apply_adapter(HFTokenModel(BASES[base]()), ADAPTERS.get(name).fn(num_virtual_tokens=N)).eval()
    with torch.no_grad():
        model.prompt_encoder.embedding.mul_(3.0)  # a prompt that matters
    prompt = IDS[:, :4]
    new = 8
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cached = sample_tokens(model, prompt, new, temperature=0)
        uncached = sample_tokens(model, prompt, new, temperature=0, use_cache=False)
        with torch.no_grad():
            reread = model(cached)[:, prompt.shape[1] - 1:-1]  # (B, new, V): the logits that chose each new token
            logits, past = model.decode_step(cached[:, :prompt.shape[1]])
            steps = [logits]
            for t in range(prompt.shape[1], cached.shape[1] - 1):  # one token a step, through the cache
                logits, past = model.decode_step(cached[:, t:t + 1], past)
                steps.append(logits)
        hf = model.hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new, do_sample=False,
                               pad_token_id=0, output_logits=True, return_dict_in_generate=True)
    assert cached.shape == (len(prompt), prompt.shape[1] + new)
    assert torch.equal(cached, uncached)
    assert torch.equal(hf.sequences, cached)
    assert len(steps) == len(hf.logits) == new
    assert (torch.stack(steps, 1) - reread).abs().max() < 1e-4
    assert (torch.stack(hf.logits, 1) - reread).abs().max() < 1e-4
    assert past.get_seq_length() == N + cached.shape[1] - 1  # the prefix, then every token but the last
    deprecated = [str(w.message) for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))
                  and "past_key_values" in str(w.message)]
    assert deprecated == []
    with torch.no_grad():  # the virtual tokens are there, at the first step and after it
        plain = HFTokenModel(BASES[base]()).eval()
        first, past = model.decode_step(prompt)
        assert not torch.allclose(first, plain.decode_step(prompt)[0], atol=1e-3)
        assert past.get_seq_length() == N + prompt.shape[1]


@pytest.mark.parametrize("name", PEFT)
def test_cache_keyword_either_name(name):
    """The cache reaches the model whichever keyword the caller uses (``cache`` or the older
    ``past_key_values``), under the one its forward declares (no deprecation warning): the
    continuation's logits are re-reading's either way."""
    from liandan.models.hf_text import cache_keyword

    model = _ours(_llama(), name, positions="shift").eval()
    key = cache_keyword(model)
    assert key in inspect.signature(type(model).forward).parameters
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        full = model(input_ids=IDS).logits[:, 8:]  # (B, 4, V)
        for given in ("cache", "past_key_values"):
            past = getattr(model(input_ids=IDS[:, :8], use_cache=True), key)
            assert past.get_seq_length() == N + 8, given  # the virtual tokens, then 8 real ones
            rest = model(input_ids=IDS[:, 8:], use_cache=True, **{given: past}).logits
            assert rest.shape == full.shape
            assert (rest - full).abs().max() < 1e-4, given
            assert past.get_seq_length() == N + 12, given
    assert [str(w.message) for w in caught if "past_key_values" in str(w.message)] == []


def test_positions():
    """GPT-2's learned positions: by default the text keeps positions 0..T-1 (a base trained at its
    full context has no more), where peft's shift runs out of the table; the soft prompt takes
    0..n-1 and every real token still sees it."""
    short = _gpt2(positions=12)
    ok = _ours(copy.deepcopy(short), "p_tuning_v2").eval()
    assert ok(input_ids=IDS).logits.shape == (*IDS.shape, 256)
    with pytest.raises(IndexError):
        _ours(copy.deepcopy(short), "p_tuning_v2", positions="shift")(input_ids=IDS)
    ours = _ours(copy.deepcopy(short), "prompt_tuning").eval()
    with torch.no_grad():
        prompt = ours.prompt_encoder.embedding[None].expand(len(IDS), -1, -1)
        embeds = torch.cat([prompt, short.get_input_embeddings()(IDS)], 1)  # (B, n + T, C)
        pos = torch.cat([torch.arange(N), torch.arange(IDS.shape[1])])[None]
        expect = short(inputs_embeds=embeds, position_ids=pos, attention_mask=torch.ones(embeds.shape[:2])).logits
        got = ours(input_ids=IDS, use_cache=False).logits  # as HFTokenModel calls it
        assert (got - expect[:, N:]).abs().max() < 1e-5
        assert ((got - short(input_ids=IDS).logits).abs().amax(-1) > 1e-3).all()  # the prompt reaches every token


def test_errors():
    t5 = transformers.T5ForConditionalGeneration(transformers.T5Config(d_model=16, d_ff=32, d_kv=8, num_layers=1,
                                                                      num_heads=2, vocab_size=64))
    with pytest.raises(LiandanError, match="not the encoder-decoder 't5'") as e:  # BERT, Qwen2: test_adapters_hf
        _ours(t5, "prefix_tuning")
    assert len(str(e.value).splitlines()) == 1
    with pytest.raises(LiandanError, match="needs a Hugging Face language model"):
        _ours(torch.nn.Linear(4, 4), "prompt_tuning")
    with pytest.raises(LiandanError, match="already has prompt_tuning"):
        _ours(_ours(_llama(), "prompt_tuning"), "p_tuning_v2")
    with pytest.raises(LiandanError, match="init_ids"):
        _ours(_llama(), "prompt_tuning", init_ids=[3, 999])
    with pytest.raises(LiandanError, match="projection"):
        ADAPTERS.get("prefix_tuning").fn(projection=False, hidden=16)


def test_init_from_vocabulary():
    """Lester et al.'s init: the embeddings of the given tokens, repeated to n."""
    model = _ours(_llama(), "prompt_tuning", init_ids=[5, 6, 7])
    table = model.get_input_embeddings().weight
    assert torch.equal(model.prompt_encoder.embedding, table[[5, 6, 7, 5, 6, 7, 5, 6, 7, 5]])


@pytest.mark.parametrize(("name", "trainable"), [("prompt_tuning", 8 * 32), ("p_tuning_v2", 8 * 1 * 2 * 32)])
def test_fine_tune_through_arith_recipe(base, tmp_path, monkeypatch, name, trainable):
    """``adapter: {name: prompt_tuning, num_virtual_tokens: 8}`` on a trained run: only the virtual
    tokens train (8 × 32; P-Tuning v2: 8 × 1 layer × keys and values × 32), adapter.safetensors
    holds them alone, and the run loads, generates and scores."""
    rec = arith_recipe("-", adapter={"name": name, "num_virtual_tokens": 8})
    rec["model"]["from_run"] = str(base.dir)
    run = liandan.train(rec, overrides=FAST, out=tmp_path / "ft", quiet=True)
    assert run.summary["status"] == "completed"
    assert run.summary["trainable_params"] == trainable
    assert run.summary["params"] == base.summary["params"] + trainable
    from safetensors.torch import load_file

    assert list(load_file(tmp_path / "ft" / "adapter.safetensors")) == ["prompt_encoder.embedding"]
    out = liandan.generate(tmp_path / "ft", "12-3=", max_new_tokens=4, temperature=0)
    assert out["finish"] == ("eos" if len(out["tokens"]) < 4 else "length")
    score = liandan.exact_match(tmp_path / "ft", max_samples=20)
    right = round(score["exact_match"] * score["n"])
    assert score["n"] == 20 and abs(score["exact_match"] * 20 - right) < 1e-9  # a count of right answers
    assert len(score["wrong_examples"]) == min(5, 20 - right)
    # the loaded run's cached generation (the virtual tokens first in its cache) is re-reading's
    monkeypatch.setattr(sys.modules["liandan.generation.text"], "sample_tokens",
                        functools.partial(sample_tokens, use_cache=False))
    assert liandan.generate(tmp_path / "ft", "12-3=", max_new_tokens=4, temperature=0)["tokens"] == out["tokens"]
    assert liandan.exact_match(tmp_path / "ft", max_samples=20) == score
