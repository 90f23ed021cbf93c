"""GGUF export: gguf-py's GGUFReader and transformers' GGUF loader are the oracles.

Bounds: an f32 file reproduces the logits (max |Δlogit| < 1e-4; measured 0). A q8_0 file
(blocks of 32 int8 weights with one fp16 scale) stays within 0.15 of logits of magnitude ~4
(measured 0.054 on this 1-epoch model) and agrees with the greedy token at ≥ 95 % of positions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from liandan.errors import LiandanError

Q8_BOUND = 0.15


def _logits_both(run_dir: Path, gguf_path: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from liandan.data.tokenize import PAD
    from liandan.export.gguf_check import load_gguf_model, prompt_ids
    from liandan.training.api import load_run

    run = load_run(run_dir)
    ids = prompt_ids(run, 16)
    model, _ = load_gguf_model(Path(gguf_path))
    with torch.no_grad():
        ref = run.model.hf(input_ids=ids, use_cache=False).logits
        got = model(input_ids=ids, use_cache=False).logits[..., : ref.shape[-1]]  # less the byte tokens
    return ref, got, (ids != PAD).cumprod(1).bool()


def test_f32_round_trip_through_transformers(llama_run, gguf_f32) -> None:
    ref, got, keep = _logits_both(llama_run, gguf_f32["path"])
    assert (got - ref).abs()[keep].max() < 1e-4
    assert gguf_f32["check"]["max_abs_diff"] < 1e-4 and gguf_f32["check"]["greedy_agreement"] == 1.0


def test_q8_0_within_bound_and_smaller(llama_run, gguf_f32, gguf_q8) -> None:
    ref, got, keep = _logits_both(llama_run, gguf_q8["path"])
    assert 0 < (got - ref).abs()[keep].max() < Q8_BOUND
    assert gguf_q8["check"]["greedy_agreement"] >= 0.95
    assert gguf_q8["tensor_types"] == {"Q8_0": 15, "F32": 5}  # 7 matrices per block + embedding; norms F32
    assert gguf_q8["bytes"] < gguf_f32["bytes"] / 3.5  # 8.5 bits per weight against 32


def test_reader_sees_llama_keys_vocab_and_tensors(llama_run, gguf_f32) -> None:
    import gguf

    from liandan.data.tokenize import load_tokenizer
    from liandan.training.api import load_run

    r = gguf.GGUFReader(gguf_f32["path"])
    f = r.fields

    def scalar(key: str):
        return f[key].contents()

    assert scalar("general.architecture") == "llama"
    assert scalar("llama.block_count") == 2 and scalar("llama.attention.head_count") == 4
    assert scalar("llama.embedding_length") == 64 and scalar("llama.rope.dimension_count") == 16
    assert scalar("tokenizer.ggml.model") == "llama" and scalar("tokenizer.ggml.bos_token_id") == 1
    vocab = [t.replace(" ", "\u2581") for t in load_tokenizer(llama_run).vocab]  # SentencePiece's visible space
    tokens, types = scalar("tokenizer.ggml.tokens"), scalar("tokenizer.ggml.token_type")
    n = len(vocab)
    assert tokens[:n] == vocab  # the run's own char vocabulary, "▁" (a space), the 256 byte-fallback tokens
    assert tokens[n] == "\u2581" and types[n] == 1
    assert tokens[n + 1:] == [f"<0x{b:02X}>" for b in range(256)] and set(types[n + 1:]) == {6}  # BYTE
    names = {t.name for t in r.tensors}
    assert len(r.tensors) == 2 + 2 * 9 == gguf_f32["tensor_count"]  # embd + final norm + 9 per block
    assert {"token_embd.weight", "output_norm.weight", "blk.1.attn_q.weight", "blk.0.ffn_gate.weight"} <= names
    assert "output.weight" not in names  # tied embeddings: readers reuse token_embd
    n_params = sum(p.numel() for p in load_run(llama_run).model.parameters())  # tied: counted once
    assert sum(int(np.prod(t.shape)) for t in r.tensors) == n_params + 257 * 64  # + the added tokens' rows


def test_char_vocab_byte_fallback(llama_run, gguf_f32) -> None:
    """Characters outside the vocabulary, where llama.cpp used to abort: a space becomes the added "▁"
    piece, "é" its two UTF-8 byte tokens; their embedding rows are <unk>'s, so the model sees what
    liandan's tokenizer gives it (<unk>). Without byte tokens llama.cpp would abort."""
    import gguf

    from liandan.data.tokenize import UNK, load_tokenizer
    from liandan.export.llamacpp_tokenizer import LlamaCppTokenizer

    tok = load_tokenizer(llama_run)
    assert " " not in tok.index  # the arith vocabulary has no space
    lc = LlamaCppTokenizer.from_gguf(gguf_f32["path"])
    space, e_acute = lc.ids["\u2581"], [lc.ids["<0xC3>"], lc.ids["<0xA9>"]]
    assert lc.encode("12 + 34=") == [1, *tok.encode("12"), space, *tok.encode("+"), space, *tok.encode("34=")]
    assert lc.encode("1é") == [1, *tok.encode("1"), *e_acute]
    emb = next(t for t in gguf.GGUFReader(gguf_f32["path"]).tensors if t.name == "token_embd.weight")
    rows = np.asarray(emb.data).reshape(-1, 64)
    n = len(tok.vocab)
    assert rows.shape[0] == n + 257 and np.array_equal(rows[n:], np.repeat(rows[UNK][None], 257, axis=0))
    assert gguf_f32["llamacpp_tokenizer"]["byte_fallback"]["byte_tokens"] > 0
    lc.ids = {t: i for t, i in lc.ids.items() if not t.startswith("<0x")}  # a file without byte tokens
    with pytest.raises(LiandanError, match="llama.cpp would abort"):
        lc.encode("1é")


def test_permutation_is_transformers_inverse() -> None:
    """Our Q/K permutation undone by transformers' own reverse permutation gives the weights back."""
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    from liandan.export.gguf_export import permute

    w = np.random.default_rng(0).standard_normal((64, 48)).astype(np.float32)
    back = LlamaTensorProcessor()._reverse_permute_weights(permute(w, 4), 4, 4)
    assert np.array_equal(back, w) and not np.array_equal(permute(w, 4), w)


def test_check_catches_a_missing_permutation(llama_run, tmp_path, monkeypatch) -> None:
    """Without the Q/K permutation the f32 logits differ: the export refuses and leaves no file."""
    from liandan.export import gguf_export, to_gguf

    monkeypatch.setattr(gguf_export, "permute", lambda w, n: w)
    with pytest.raises(LiandanError, match="not written"):
        to_gguf(llama_run, tmp_path / "bad.gguf")
    assert list(tmp_path.iterdir()) == []


def test_refusals(mlp_run, gpt2_run, llama_run) -> None:
    from liandan.export import to_gguf

    with pytest.raises(LiandanError, match="model.style=llama"):
        to_gguf(gpt2_run)
    with pytest.raises(LiandanError, match="language-model runs"):
        to_gguf(mlp_run)
    with pytest.raises(LiandanError, match="f32, f16, q8_0, q4_0"):
        to_gguf(llama_run, outtype="q4_k")
    with pytest.raises(LiandanError, match="export the run directory itself"):
        to_gguf(llama_run / "hf")  # a char-level run's RUN/hf holds a WordLevel tokenizer


def test_bpe_vocabulary_round_trips_as_gpt2_tokenizer(tmp_path) -> None:
    """A byte-level BPE run: tokens + merges as a "gpt2" tokenizer; transformers re-encodes text to the run's ids."""
    import random

    import gguf

    import liandan
    from liandan.export import to_gguf

    rng = random.Random(0)
    words = "the quick brown fox jumps over a lazy dog while cats sleep and birds sing".split()
    (tmp_path / "c.txt").write_text("\n".join(" ".join(rng.choice(words) for _ in range(10)) for _ in range(120)))
    recipe = {"name": "bpe", "data": {"source": "text", "path": str(tmp_path / "c.txt"), "tokenizer": "bpe",
                                      "vocab_size": 300, "max_len": 16},
              "model": {"name": "gpt", "style": "llama", "layers": 1, "dim": 32, "heads": 2},
              "train": {"epochs": 1, "tensorboard": False}, "doctor": {"enabled": False}, "report": False}
    run = liandan.train(recipe, out=tmp_path / "run", quiet=True)
    res = to_gguf(run.dir, outtype="f32")
    assert res["tokenizer_model"] == "gpt2" and res["check"]["tokenizer"] == "same ids"
    assert res["check"]["max_abs_diff"] < 1e-4
    r = gguf.GGUFReader(res["path"])
    assert len(r.fields["tokenizer.ggml.merges"].data) > 0
    assert r.fields["tokenizer.ggml.pre"].contents() == "gpt-2"  # "default" splits unlike training
    lc = res["llamacpp_tokenizer"]  # llama.cpp's tokenizer from the file gives liandan's ids
    assert lc["pre"] == "gpt-2" and lc["same_ids"] == lc["texts"] > 0
    hf = to_gguf(run.dir / "hf", outtype="f32")  # the run's save_pretrained copy: the same model and vocabulary
    assert hf["source_kind"] == "hf" and hf["check"]["max_abs_diff"] < 1e-4 and hf["tokenizer"]["add_bos"]
    assert gguf.GGUFReader(hf["path"]).fields["tokenizer.ggml.tokens"].contents() == \
        r.fields["tokenizer.ggml.tokens"].contents()
