"""Export a LLaMA- or Qwen2-architecture language model to GGUF, checked the way llama.cpp will read it.

GGUF (ggml's single-file format, https://github.com/ggml-org/ggml/blob/master/docs/gguf.md, read
by llama.cpp) holds key/value metadata (architecture, hyper-parameters, tokenizer) and named
tensors, optionally block-quantised. We write it with the ``gguf`` package the way llama.cpp's
``convert_hf_to_gguf.py`` does for ``LlamaForCausalLM`` and ``Qwen2ForCausalLM``:

- hyper-parameters as ``llama.*`` / ``qwen2.*`` keys; tensors renamed by ``gguf.TensorNameMap``
  (``model.layers.N.self_attn.q_proj.weight`` → ``blk.N.attn_q.weight``), Qwen2's q/k/v biases
  included (``blk.N.attn_q.bias``; 1-D, so F32);
- LLaMA's Q and K rows permuted: Hugging Face's rotary embedding rotates the two *halves* of each
  head (``rotate_half``), GGML's LLaMA rope rotates adjacent *pairs* (the original LLaMA layout,
  Su et al. 2021 "RoFormer"), so each head's rows are interleaved (``permute``, as
  ``LlamaModel.permute``). Qwen2 needs none: llama.cpp runs it with the NEOX (half-split) rope;
- tied input/output embeddings: no ``output.weight`` (llama.cpp and transformers reuse
  ``token_embd.weight``);
- 1-D tensors stay F32; matrices become F32, F16, Q8_0 or Q4_0 (blocks of 32 weights sharing one
  scale: 8.5 / 4.5 bits per weight);
- the tokenizer as :mod:`liandan.export.gguf_vocab` describes it: byte-level BPE with its merges,
  the pre-tokenizer name llama.cpp needs (``gpt-2``, ``qwen2``), special tokens, whether to add
  ``<bos>``, the chat template; a char-level vocabulary with the 256 byte-fallback tokens, whose
  embedding rows are copies of ``<unk>``'s.

Sources (:mod:`liandan.export.gguf_source`): a LLaMA-style liandan LM run, or a ``save_pretrained``
directory. GPT-2-style runs are refused (train with ``model.style=llama``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from liandan.errors import LiandanError
from liandan.export._common import atomic_file, destination, first_line, require, write_manifest
from liandan.export.gguf_source import Source, open_source

OUTTYPES = ("f32", "f16", "q8_0", "q4_0")
F32_BOUND = 1e-4  # an f32 file must reproduce the logits (measured: 0), relative to logits above 1


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Q/K rows from Hugging Face's half-split rotary layout to GGML's interleaved pairs, per head."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _hparams(cfg: Any, arch: str) -> dict[str, Any]:
    rope = dict(getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {})
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise LiandanError(f"GGUF export supports plain rotary positions, not rope_type {rope.get('rope_type')!r}")
    theta = rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    if head_dim * cfg.num_attention_heads != cfg.hidden_size:
        raise LiandanError(f"GGUF export: head_dim {head_dim} × {cfg.num_attention_heads} heads ≠ hidden size "
                           f"{cfg.hidden_size} is not supported")
    if arch == "llama" and (getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False)):
        raise LiandanError("GGUF export: a LLaMA model with attention or MLP biases is not supported")
    if arch == "qwen2" and getattr(cfg, "use_sliding_window", False):
        raise LiandanError("GGUF export: Qwen2 with use_sliding_window=true is not supported (llama.cpp's qwen2 "
                           "attends to the whole context)")
    return {"context_length": cfg.max_position_embeddings, "embedding_length": cfg.hidden_size,
            "block_count": cfg.num_hidden_layers, "feed_forward_length": cfg.intermediate_size,
            "head_count": cfg.num_attention_heads, "head_count_kv": cfg.num_key_value_heads or cfg.num_attention_heads,
            "rope_dimension_count": head_dim, "rope_freq_base": float(theta), "rms_eps": float(cfg.rms_norm_eps),
            "vocab_size": cfg.vocab_size, "tied": bool(cfg.tie_word_embeddings)}


def _encode(w: np.ndarray, outtype: str) -> tuple[np.ndarray, Any, str]:
    """The tensor's bytes (or array) for GGUFWriter, its GGML type and the type's name."""
    import gguf

    Q = gguf.GGMLQuantizationType
    if w.ndim < 2 or outtype == "f32":  # norms and biases stay F32, as llama.cpp keeps them
        return w.astype(np.float32), Q.F32, "F32"
    if outtype == "f16":
        return w.astype(np.float16), Q.F16, "F16"
    qtype = {"q8_0": Q.Q8_0, "q4_0": Q.Q4_0}[outtype]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if w.shape[-1] % block:  # a row that does not fill whole blocks cannot be quantised: F16, as llama.cpp
        return w.astype(np.float16), Q.F16, "F16"
    return gguf.quants.quantize(w.astype(np.float32), qtype), qtype, qtype.name


def _tensors(src: Source, hp: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array) in the model's order; LLaMA's Q/K permuted; a tied lm_head left out;
    the embedding (and an untied head) grown by the byte tokens' rows, copies of ``<unk>``'s."""
    import gguf

    arch = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}[src.arch]
    names = gguf.TensorNameMap(arch, hp["block_count"])
    extra = len(src.vocab.tokens) - hp["vocab_size"]
    out = []
    for key, t in src.model.state_dict().items():
        if (key == "lm_head.weight" and hp["tied"]) or key.endswith("rotary_emb.inv_freq"):
            continue
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise LiandanError(f"GGUF export: no GGUF name for tensor {key!r}")
        w = t.detach().float().cpu().numpy()
        if src.arch == "llama" and key.endswith("q_proj.weight"):
            w = permute(w, hp["head_count"])
        elif src.arch == "llama" and key.endswith("k_proj.weight"):
            w = permute(w, hp["head_count_kv"])
        if extra and key in ("model.embed_tokens.weight", "lm_head.weight"):
            w = np.concatenate([w, np.repeat(w[src.vocab.byte_rows_from][None], extra, axis=0)])
        out.append((name, w))
    return out


def _write(path: Path, src: Source, hp: dict[str, Any], outtype: str) -> dict[str, int]:
    import gguf

    voc = src.vocab
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[outtype]
    w = gguf.GGUFWriter(str(path), src.arch)
    w.add_name(src.name)
    w.add_description(src.description)
    w.add_file_type(ftype)
    w.add_context_length(hp["context_length"])
    w.add_embedding_length(hp["embedding_length"])
    w.add_block_count(hp["block_count"])
    w.add_feed_forward_length(hp["feed_forward_length"])
    w.add_head_count(hp["head_count"])
    w.add_head_count_kv(hp["head_count_kv"])
    w.add_rope_dimension_count(hp["rope_dimension_count"])
    w.add_rope_freq_base(hp["rope_freq_base"])
    w.add_layer_norm_rms_eps(hp["rms_eps"])
    w.add_vocab_size(len(voc.tokens))
    w.add_tokenizer_model(voc.model)
    if voc.model == "gpt2":
        w.add_tokenizer_pre(voc.pre)
        w.add_token_merges(voc.merges)
    w.add_token_list(voc.tokens)
    if voc.scores is not None:
        w.add_token_scores(voc.scores)
    w.add_token_types(voc.types)
    for add, tid in ((w.add_bos_token_id, voc.bos), (w.add_eos_token_id, voc.eos), (w.add_unk_token_id, voc.unk),
                     (w.add_pad_token_id, voc.pad)):
        if tid is not None:
            add(int(tid))
    w.add_add_bos_token(voc.add_bos)
    w.add_add_eos_token(voc.add_eos)
    if voc.model == "llama":
        w.add_add_space_prefix(voc.add_space_prefix)  # the run never saw a leading space
    if voc.chat_template:
        w.add_chat_template(voc.chat_template)
    types: dict[str, int] = {}
    for name, arr in _tensors(src, hp):
        data, qtype, tname = _encode(arr, outtype)
        w.add_tensor(name, data, raw_dtype=qtype if qtype not in (gguf.GGMLQuantizationType.F32,
                                                                   gguf.GGMLQuantizationType.F16) else None)
        types[tname] = types.get(tname, 0) + 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return types


def to_gguf(source: str | Path, out: str | Path | None = None, *, outtype: str = "f32", check: bool = True,
            max_prompts: int = 32) -> dict[str, Any]:
    """Write ``source`` — a LLaMA-style LM run or a LLaMA/Qwen2 ``save_pretrained`` directory — as
    GGUF (default ``SOURCE/export/model-<outtype>.gguf``).

    ``outtype``: ``f32``, ``f16``, ``q8_0`` or ``q4_0``. The temporary file is always read back
    with ``gguf.GGUFReader`` and its tokenizer metadata driven through a re-implementation of
    llama.cpp's tokenizer (:mod:`~liandan.export.llamacpp_tokenizer`): sample texts must get the
    model's own ids. With ``check`` transformers also loads it (``from_pretrained(dir,
    gguf_file=...)``, an independent reader that undoes the Q/K permutation) and its logits on up
    to ``max_prompts`` prompts are compared with the source model's: max |Δlogit| and greedy
    agreement go to ``export.json``; an f32 file must match within 1e-4 (relative to logits above 1)
    or it is not written."""
    if outtype not in OUTTYPES:
        raise LiandanError(f"--outtype {outtype!r}: use one of {', '.join(OUTTYPES)}")
    require("gguf", "regex", "transformers")
    src = open_source(source, max_prompts)
    path = destination(src.default_dir, out, f"model-{outtype}.gguf", ".gguf")
    hp = _hparams(src.model.config, src.arch)
    from liandan.export.gguf_check import compare_logits, llamacpp_tokenizer_check

    with atomic_file(path) as tmp:
        types = _write(tmp, src, hp, outtype)
        entry: dict[str, Any] = {"format": "gguf", "file": path.name, "source": str(src.path), "source_kind": src.kind,
                                 "arch": src.arch, "outtype": outtype, "tensor_types": types,
                                 "tokenizer_model": src.vocab.model, "tokenizer": src.vocab.summary(),
                                 "vocab_size": len(src.vocab.tokens), **_read_back(tmp)}
        if src.kind == "run":
            entry["run"] = str(src.path)
        entry["llamacpp_tokenizer"] = llamacpp_tokenizer_check(tmp, src)
        if check:
            res = compare_logits(tmp, src)
            entry["check"] = res
            bound = F32_BOUND * max(1.0, res["logit_scale"])
            if outtype == "f32" and not res["max_abs_diff"] <= bound:
                raise LiandanError(f"the f32 GGUF file's logits differ by {res['max_abs_diff']:.3g} > {bound:.3g} "
                                   f"when transformers reads it back; {path} not written")
        entry["bytes"] = tmp.stat().st_size
    return {**write_manifest(path, entry), "path": str(path)}


def _read_back(path: Path) -> dict[str, Any]:
    """Key and tensor counts as ``gguf.GGUFReader`` (the reference reader) sees them."""
    import gguf

    try:
        r = gguf.GGUFReader(str(path))
    except Exception as e:  # noqa: BLE001
        raise LiandanError(f"GGUFReader cannot read the written file: {first_line(e)}") from None
    return {"kv_count": len(r.fields), "tensor_count": len(r.tensors),
            "params": int(sum(int(np.prod(t.shape)) for t in r.tensors))}
