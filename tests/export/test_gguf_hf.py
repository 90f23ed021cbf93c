"""GGUF export of save_pretrained LLaMA and Qwen2 directories with real byte-level BPE tokenizers.

Oracles: transformers' GGUF reader (logits), gguf's ``GGUFReader`` (the metadata llama.cpp reads),
the directories' own transformers tokenizers (ids), and our re-implementation of llama.cpp's
tokenizer fed only the file's metadata. ``bench/llamacpp_check.py`` runs llama.cpp itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from liandan.errors import LiandanError

from .hf_dirs import CHATML, llama_dir, qwen2_dir

Q8_BOUND = 0.1  # q8_0 on these random-init models: measured ≈ 0.01 at logits ≈ 1


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {"llama": llama_dir(root), "qwen2": qwen2_dir(root)}


@pytest.fixture(scope="module")
def exported(dirs) -> dict[str, dict]:
    from liandan.export import to_gguf

    return {"llama": to_gguf(dirs["llama"]), "qwen2": to_gguf(dirs["qwen2"])}


def _fields(path: str) -> dict:
    import gguf

    r = gguf.GGUFReader(path)
    return {k: f.contents() for k, f in r.fields.items()} | {"_tensors": {t.name: t for t in r.tensors}}


def _hf_logits(model_dir: Path, gguf_path: str) -> tuple[torch.Tensor, torch.Tensor]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from liandan.export.gguf_check import load_gguf_model

    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = torch.tensor([tok("the cat sat on the mat, 12345 times. I've café 日本")["input_ids"]])
    ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    got, _ = load_gguf_model(Path(gguf_path))
    with torch.no_grad():
        return ref(input_ids=ids).logits, got(input_ids=ids).logits


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_f32_logits_match_transformers(dirs, exported, arch) -> None:
    ref, got = _hf_logits(dirs[arch], exported[arch]["path"])
    assert ref.shape == got.shape and (got - ref).abs().max() < 1e-4
    assert exported[arch]["check"]["max_abs_diff"] < 1e-4 and exported[arch]["check"]["greedy_agreement"] == 1.0
    assert exported[arch]["arch"] == arch and exported[arch]["source_kind"] == "hf"


@pytest.mark.slow
def test_q8_0_within_bound(dirs) -> None:
    from liandan.export import to_gguf

    q8 = to_gguf(dirs["qwen2"], outtype="q8_0")
    ref, got = _hf_logits(dirs["qwen2"], q8["path"])
    assert 0 < (got - ref).abs().max() < Q8_BOUND
    assert q8["tensor_types"]["Q8_0"] == 2 * 7 + 2  # 7 per block, embedding, untied head
    assert q8["tensor_types"]["F32"] == 1 + 2 * 5  # output norm; per block 2 norms + 3 biases


def test_llama_metadata_is_gpt2_bpe(dirs, exported) -> None:
    f = _fields(exported["llama"]["path"])
    doc = json.loads((dirs["llama"] / "tokenizer.json").read_text())
    assert f["general.architecture"] == "llama" and f["tokenizer.ggml.model"] == "gpt2"
    assert f["tokenizer.ggml.pre"] == "gpt-2"  # not "default": llama.cpp would split digits and punctuation
    assert f["tokenizer.ggml.merges"] == [" ".join(m) if isinstance(m, list) else m for m in doc["model"]["merges"]]
    tokens, types = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.token_type"]
    assert [tokens[i] for i in (0, 1, 2)] == ["<s>", "</s>", "<pad>"] and [types[i] for i in (0, 1, 2)] == [3, 3, 3]
    assert set(types[3:]) == {1}  # NORMAL
    assert f["tokenizer.ggml.bos_token_id"] == 0 and f["tokenizer.ggml.eos_token_id"] == 1
    assert f["tokenizer.ggml.add_bos_token"] is True
    assert "output.weight" not in f["_tensors"]  # tied
    assert f["llama.attention.head_count_kv"] == 2


def test_qwen2_metadata_biases_template(dirs, exported) -> None:
    from transformers import AutoTokenizer

    f = _fields(exported["qwen2"]["path"])
    tok = AutoTokenizer.from_pretrained(dirs["qwen2"])
    assert f["general.architecture"] == "qwen2" and f["tokenizer.ggml.pre"] == "qwen2"
    assert f["tokenizer.chat_template"] == CHATML
    tokens, types = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.token_type"]
    assert tokens[-5:] == [f"[PAD{i}]" for i in range(len(tokens) - 5, len(tokens))] and set(types[-5:]) == {5}
    assert {tokens[i]: types[i] for i in range(3)} == {"<|endoftext|>": 3, "<|im_start|>": 3, "<|im_end|>": 3}
    assert f["tokenizer.ggml.eos_token_id"] == tok.convert_tokens_to_ids("<|im_end|>")
    assert f["tokenizer.ggml.add_bos_token"] is False
    assert f["qwen2.rope.freq_base"] == pytest.approx(1e6)
    t = f["_tensors"]
    assert {"output.weight", "blk.0.attn_q.bias", "blk.1.attn_k.bias", "blk.1.attn_v.bias"} <= set(t)
    from safetensors.torch import load_file

    bias = load_file(dirs["qwen2"] / "model.safetensors")["model.layers.1.self_attn.k_proj.bias"].numpy()
    assert np.array_equal(np.asarray(t["blk.1.attn_k.bias"].data), bias) and np.abs(bias).max() > 0.1


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_llamacpp_tokenizer_from_file_matches_hf(dirs, exported, arch) -> None:
    """llama.cpp's tokenizer rebuilt from the file alone gives the HF tokenizer's ids on 300 generated
    strings; the same file with the other pre-tokenizer name does not (the check can fail)."""
    from transformers import AutoTokenizer

    from liandan.export.gguf_source import sample_texts
    from liandan.export.llamacpp_tokenizer import LlamaCppTokenizer

    lc = LlamaCppTokenizer.from_gguf(exported[arch]["path"])
    tok = AutoTokenizer.from_pretrained(dirs[arch])
    texts = sample_texts(lc.v, 300, seed=7)
    assert sum(lc.encode(t) == tok(t)["input_ids"] for t in texts) == len(texts)
    assert exported[arch]["llamacpp_tokenizer"]["same_ids"] == exported[arch]["llamacpp_tokenizer"]["texts"] == 300
    lc.v.pre = {"gpt-2": "qwen2", "qwen2": "gpt-2"}[lc.v.pre]
    assert sum(lc.encode(t) == tok(t)["input_ids"] for t in texts) < 0.9 * len(texts)


def test_unsupported_pre_tokenizer_is_refused(tmp_path, dirs) -> None:
    import shutil

    from liandan.export import to_gguf

    d = tmp_path / "odd"
    shutil.copytree(dirs["llama"], d, ignore=shutil.ignore_patterns("export"))
    doc = json.loads((d / "tokenizer.json").read_text())
    doc["pre_tokenizer"] = {"type": "Whitespace"}
    (d / "tokenizer.json").write_text(json.dumps(doc))
    with pytest.raises(LiandanError, match="supported: gpt-2"):
        to_gguf(d)
    assert not (d / "export" / "model-f32.gguf").exists()


def test_hf_dir_refusals(tmp_path, dirs) -> None:
    import shutil

    from liandan.export import export, to_gguf

    with pytest.raises(LiandanError, match="ONNX export takes run directories"):
        export(dirs["llama"], "onnx")
    d = tmp_path / "pickled"
    shutil.copytree(dirs["llama"], d, ignore=shutil.ignore_patterns("export"))
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(LiandanError, match="only safetensors"):
        to_gguf(d)
