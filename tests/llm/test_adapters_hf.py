"""Every registered adapter on real Hugging Face architectures, loaded with ``from_pretrained`` from
``save_pretrained`` directories written here: LLaMA and Qwen2 (``nn.Linear``), GPT-2 (``Conv1D``,
weights stored ``(in, out)``) and a BERT sequence classifier (an encoder whose head trains too).

peft is the oracle: default and ``all-linear`` targets pick peft's modules; LoRA on GPT-2's Conv1D
equals peft's ``fan_in_fan_out`` LoRA; a merge writes a plain directory that ``AutoModelFor…``
loads with the adapted logits (≤ 1e-5). peft's format both ways, ``merge`` and the packaged MiniLM:
test_adapters_hf_peft.py (which takes this file's models and helpers).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from liandan.adapters import (
    adapter_layers,
    apply_adapter,
    merged_copy,
    model_adapters,
    save_merged,
    trainable_parameters,
)
from liandan.adapters.inject import ADAPTER_MARK, MODEL_ADAPTER_MARK
from liandan.errors import LiandanError
from liandan.registry import ADAPTERS

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

V, T, N = 128, 12, 4  # vocabulary, sequence length, virtual tokens
TOL = 1e-5
# the init std of the models that train: at width 32 transformers' 0.02 keeps every logit within ±0.7 (a
# 0.02 head on a unit-RMS state), so no few steps move the loss far from ln V; trained weights are this large
TRAINED_STD = 0.2
IDS = torch.randint(3, V, (4, T), generator=torch.Generator().manual_seed(0))
MASK = torch.tensor([[1] * 12, [1] * 9 + [0] * 3, [1] * 6 + [0] * 6, [1] * 12])  # right padding
LABELS = torch.tensor([0, 2, 1, 2])  # BERT's classes
CLASSIFIERS = ("bert",)
# what all-linear adapts (peft's set): short names, and how many layers in the 2-layer models
ALL_LINEAR = {"llama": ({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}, 14),
              "qwen2": ({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}, 14),
              "gpt2": ({"c_attn", "c_proj", "c_fc"}, 8),
              "bert": ({"query", "key", "value", "dense"}, 13)}  # 2 × (q, k, v, 3 dense) + the pooler's


def _configs(std: float = 0.02) -> dict:
    """The four tiny models; ``std``: the init std (transformers' 0.02, or :data:`TRAINED_STD`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoder = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "vocab_size": V, "max_position_embeddings": 128,
                   "initializer_range": std}
        return {
            "llama": ("LlamaForCausalLM", transformers.LlamaConfig(**decoder)),
            "qwen2": ("Qwen2ForCausalLM", transformers.Qwen2Config(**decoder)),
            "gpt2": ("GPT2LMHeadModel", transformers.GPT2Config(
                n_layer=2, n_embd=32, n_head=2, vocab_size=V, n_positions=128, resid_pdrop=0.0, embd_pdrop=0.0,
                attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, initializer_range=std)),
            "bert": ("BertForSequenceClassification", transformers.BertConfig(
                hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=V,
                max_position_embeddings=128, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                initializer_range=std)),
        }


ARCHS = list(_configs())


def _tokenizer():
    """A word-level tokenizer over the models' vocabulary ("w5 w6" → [5, 6])."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, **{f"w{i}": i for i in range(3, V)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


def _write(root, std: float) -> dict:
    """One ``save_pretrained`` directory per architecture (random weights, seed 0), tokenizer beside it."""
    dirs = {}
    for arch, (cls, config) in _configs(std).items():
        torch.manual_seed(0)
        getattr(transformers, cls)(config).save_pretrained(root / arch)
        _tokenizer().save_pretrained(root / arch)
        dirs[arch] = root / arch
    return dirs


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory) -> dict:
    """The models at transformers' init (logits within about ±1: 1e-5 is a tight tolerance there)."""
    return _write(tmp_path_factory.mktemp("hf"), 0.02)


@pytest.fixture(scope="module")
def trained_dirs(tmp_path_factory) -> dict:
    """The models with trained-size weights (init std 0.2): a few steps move the loss clearly."""
    return _write(tmp_path_factory.mktemp("hf_trained"), TRAINED_STD)


def _load(hf_dirs: dict, arch: str):
    cls = _configs()[arch][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(transformers, cls).from_pretrained(hf_dirs[arch]).eval()


def _auto(arch: str):
    return transformers.AutoModelForSequenceClassification if arch in CLASSIFIERS else \
        transformers.AutoModelForCausalLM


def _task(arch: str) -> str:
    return "SEQ_CLS" if arch in CLASSIFIERS else "CAUSAL_LM"


@torch.no_grad()
def _delta(a, b) -> float:
    """max |Δlogit| over the real positions, without and with the padding mask (peft's prompt
    tuning returns its virtual positions too: the last T are the real ones)."""
    worst = 0.0
    for mask in (None, MASK):
        x, y = (m(input_ids=IDS, attention_mask=mask).logits for m in (a, b))
        if x.dim() == 3:  # (B, T, V): per token
            real = torch.ones_like(IDS, dtype=torch.bool) if mask is None else mask.bool()
            x, y = x[:, -T:][real], y[:, -T:][real]
        worst = max(worst, (x - y).abs().max().item())
    return worst


def _loss(model, arch: str) -> torch.Tensor:
    logits = model(input_ids=IDS, attention_mask=MASK).logits
    if arch in CLASSIFIERS:
        return F.cross_entropy(logits, LABELS)  # (B, K)
    targets = IDS.masked_fill(MASK == 0, -100)[:, 1:]  # next token, padding ignored
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten())


def _train(model, arch: str, lr: float, steps: int = 6) -> list[float]:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = _loss(model, arch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def _options(name: str) -> dict:
    """Small, valid options for any registered method: rank 4 (VeRA 16), all-linear targets, 4 tokens."""
    params = ADAPTERS.get(name).options()
    opts = {"r": 16 if name == "vera" else 4, "targets": "all-linear", "num_virtual_tokens": N}
    return ADAPTERS.get(name).validate({k: v for k, v in opts.items() if k in params}, where="adapter")


@torch.no_grad()
def _perturb(model, seed: int, size: float = 0.3) -> None:
    """Trained-like adapter weights (B ≠ 0, λ_b ≠ 0, prompts and the head off their init)."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.requires_grad:
            p.add_(torch.randn(p.shape, generator=g) * size)


def _method(model) -> str:
    (name,) = {getattr(m, ADAPTER_MARK) for _, m in adapter_layers(model)} | {
        getattr(m, MODEL_ADAPTER_MARK) for _, m in model_adapters(model)}
    return name


# ---------------------------------------------------------------- targets, Conv1D, the head


@pytest.mark.parametrize("arch", ARCHS)
def test_targets_are_peft(arch, hf_dirs):
    """Without targets: peft's default modules for the architecture; ``all-linear``: peft's
    all-linear set (every Linear/Conv1D but the LM head or the classifier, which trains whole)."""
    for ours_targets, theirs_targets in ((None, None), ("all-linear", "all-linear")):
        ours = apply_adapter(_load(hf_dirs, arch), ADAPTERS.get("lora").fn(r=4, targets=ours_targets))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = peft.get_peft_model(_load(hf_dirs, arch), peft.LoraConfig(
                r=4, target_modules=theirs_targets, task_type=_task(arch)))
        theirs = {n.removeprefix("base_model.model.") for n, m in ref.named_modules() if hasattr(m, "lora_A")
                  and isinstance(m.lora_A, torch.nn.ModuleDict)}
        assert {n for n, _ in adapter_layers(ours)} == theirs
        assert trainable_parameters(ours)[0] == sum(p.numel() for p in ref.parameters() if p.requires_grad)
    short, count = ALL_LINEAR[arch]
    assert {n.rsplit(".", 1)[-1] for n, _ in adapter_layers(ours)} == short and len(adapter_layers(ours)) == count
    heads = {n.rsplit(".", 1)[0] for n, p in ours.named_parameters() if p.requires_grad and "lora_" not in n}
    assert heads == ({"classifier"} if arch in CLASSIFIERS else set())  # peft's modules_to_save for SEQ_CLS


def test_lora_on_gpt2_conv1d_equals_peft(hf_dirs):
    """GPT-2's Conv1D (weight (in, out), y = x W + b): the same A, B as peft's fan_in_fan_out LoRA on
    every c_attn, c_proj and c_fc give peft's logits, adapted and merged."""
    ours = apply_adapter(_load(hf_dirs, "gpt2"), ADAPTERS.get("lora").fn(r=4, alpha=8, targets="all-linear"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft: "fan_in_fan_out is set to False but the target module is Conv1D"
        ref = peft.get_peft_model(_load(hf_dirs, "gpt2"),
                                  peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    assert ref.peft_config["default"].fan_in_fan_out
    layers = dict(adapter_layers(ours))
    assert {type(m.base).__name__ for m in layers.values()} == {"Conv1D"}
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, m in ref.named_modules():
            if isinstance(getattr(m, "lora_A", None), torch.nn.ModuleDict):
                mine = layers[name.removeprefix("base_model.model.")]  # A: our own init; B ≠ 0, as after training
                mine.lora_B.copy_(torch.randn(mine.lora_B.shape, generator=g) * 0.3)
                m.lora_A["default"].weight.copy_(mine.lora_A)
                m.lora_B["default"].weight.copy_(mine.lora_B)
    assert _delta(ours, ref) < TOL and _delta(ours, _load(hf_dirs, "gpt2")) > 1e-2
    assert _delta(merged_copy(ours), ref.merge_and_unload()) < TOL


def test_dylora_merges_its_serving_rank(hf_dirs):
    """A DyLoRA merged right after a training step (which drew some rank b ≤ r) folds in the serving
    rank, not b: the merged model is the evaluated one."""
    from liandan.adapters.dylora import set_rank

    model = apply_adapter(_load(hf_dirs, "llama"), ADAPTERS.get("dylora").fn(r=8, targets="all-linear", seed=5))
    with torch.no_grad():
        for _, m in adapter_layers(model):
            m.lora_B.normal_(0, 0.1)
    set_rank(model, 6)
    model.train()
    drawn = set()
    for _ in range(8):  # the seed's draws include ranks other than 6
        model(input_ids=IDS[:1])
        drawn.add(model._dylora.rank)
    assert drawn - {6}
    merged = merged_copy(model)  # no evaluation forward in between
    model.eval()
    assert _delta(merged.eval(), model) < TOL


@torch.no_grad()
def test_bert_prefix_is_a_key_value_prefix(hf_dirs):
    """P-Tuning v2 on BERT: the same as running [prefix; text] with the prefix tokens seeing only
    themselves, the text seeing both, and the prefix's keys and values taken as the adapter's
    (positions: shift, as peft: the text at n..n+T-1)."""
    base = _load(hf_dirs, "bert")
    ours = apply_adapter(_load(hf_dirs, "bert"), ADAPTERS.get("p_tuning_v2").fn(num_virtual_tokens=N,
                                                                                   positions="shift")).eval()
    width = base.config.hidden_size
    prefix = torch.randn(1, N, width, generator=torch.Generator().manual_seed(3)).expand(len(IDS), -1, -1)
    full = torch.cat([prefix, base.bert.embeddings.word_embeddings(IDS)], 1)  # (B, n + T, C)
    see = torch.zeros(len(IDS), 1, N + T, N + T, dtype=torch.bool)
    see[:, :, :, :N] = True  # everyone sees the prefix
    see[:, :, N:, N:] = MASK.bool()[:, None, None, :]  # the text sees the real text
    kv = {}
    hooks = [getattr(layer.attention.self, w).register_forward_hook(
        lambda _m, _a, out, key=(i, w): kv.__setitem__(key, out[0, :N])) for i, layer in
        enumerate(base.bert.encoder.layer) for w in ("key", "value")]
    hidden = base.bert(inputs_embeds=full, attention_mask=see).last_hidden_state  # (B, n + T, C)
    for h in hooks:
        h.remove()
    expect = base.classifier(base.bert.pooler(hidden[:, N:]))  # the pooler reads the first real token
    ours.prompt_encoder.embedding.copy_(torch.cat([kv[i, w] for i in range(2) for w in ("key", "value")], 1))
    got = ours(input_ids=IDS, attention_mask=MASK).logits  # (B, K)
    assert (got - expect).abs().max() < TOL
    assert (got - base(input_ids=IDS, attention_mask=MASK).logits).abs().max() > 1e-3  # the prefix matters


# ---------------------------------------------------------------- every adapter × every architecture


def _every(fast: set[tuple[str, str]]):
    return [pytest.param(arch, name, marks=() if (arch, name) in fast else pytest.mark.slow)
            for arch in ARCHS for name in ADAPTERS.names()]


@pytest.mark.parametrize(("arch", "name"), _every({("gpt2", "lora"), ("bert", "lora")}))
def test_every_adapter_on_every_architecture(arch, name, trained_dirs, tmp_path):
    """Injects into the all-linear modules (or installs virtual tokens), starts from the base where
    the update is zero-initialised, trains (the loss falls; frozen weights stay), and a merge writes
    a directory AutoModelFor… loads with the adapted logits, its tokenizer files copied. Logits here
    reach ±5: "equal" is within 1e-5 of that size (float rounding; 1e-5 absolute at transformers'
    init is checked by test_peft_to_liandan and test_merged_directory_is_exact)."""
    entry = ADAPTERS.get(name)
    prompt, quantized = "prompt" in entry.tags, "quantized" in entry.tags
    base = _load(trained_dirs, arch)
    with torch.no_grad():
        tol = TOL * max(1.0, base(input_ids=IDS, attention_mask=MASK).logits.abs().max().item())
    model = apply_adapter(_load(trained_dirs, arch), entry.fn(**_options(name)))
    if prompt:
        assert model_adapters(model) and not adapter_layers(model)
    else:
        short, count = ALL_LINEAR[arch]
        assert {n.rsplit(".", 1)[-1] for n, _ in adapter_layers(model)} == short
        assert len(adapter_layers(model)) == count
        start = _delta(model, base)
        if quantized:  # the base itself is 4-bit: it starts from the dequantised base (how close that is to
            assert start > 0 and _delta(model, merged_copy(model)) < tol  # float: test_quantized_adapters)
        else:
            assert start == 0.0  # zero-initialised update: exactly the base model
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    lr = {"vera": 5e-2}.get(name, 3e-2 if prompt else 1e-2)
    losses = _train(model, arch, lr)
    assert losses[-1] < 0.99 * losses[0], losses  # measured ≤ 0.96 over 3 seeds (full batch, no dropout)
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    if prompt:
        with pytest.raises(LiandanError, match="virtual tokens"):
            save_merged(model, tmp_path / "merged")
        return
    out = save_merged(model, tmp_path / "merged")
    assert adapter_layers(model)  # the model itself keeps its adapter
    plain = _auto(arch).from_pretrained(out).eval()
    assert type(plain).__name__ == _configs()[arch][0]
    assert _delta(plain, model) < tol and _delta(plain, base) > 1e-3
    for f in ("tokenizer.json", "tokenizer_config.json"):  # the base directory's tokenizer, as it was
        assert (out / f).read_bytes() == (trained_dirs[arch] / f).read_bytes()
    assert transformers.PreTrainedTokenizerFast.from_pretrained(out)("w5 w6")["input_ids"] == [5, 6]


@pytest.mark.parametrize("arch", [a if a == "gpt2" else pytest.param(a, marks=pytest.mark.slow) for a in ARCHS])
def test_merged_directory_is_exact(arch, hf_dirs, tmp_path):
    """At transformers' init (logits about ±1), every weight adapter with trained-like weights merges
    into a save_pretrained directory whose AutoModelFor… logits are the adapted model's within 1e-5."""
    for name in ADAPTERS.names():
        entry = ADAPTERS.get(name)
        # liandan's own methods: an adapter another test registered (examples/custom_adapter.py's IA³)
        # is not one of them and takes other options
        if "prompt" in entry.tags or not entry.fn.__module__.startswith("liandan.adapters"):
            continue
        model = apply_adapter(_load(hf_dirs, arch), ADAPTERS.get(name).fn(**_options(name))).eval()
        _perturb(model, 3, 0.05)  # B about what a few hundred small steps give (α/r = 4 scales it)
        plain = _auto(arch).from_pretrained(save_merged(model, tmp_path / name)).eval()
        assert _delta(plain, model) < TOL, name
        assert _delta(plain, _load(hf_dirs, arch)) > 1e-2, name  # the update is in the weights
