"""Export a LLaMA-style language-model run to GGUF, verified by loading it back with transformers.

GGUF (ggml's single-file format, https://github.com/ggml-org/ggml/blob/master/docs/gguf.md, read
by llama.cpp) holds key/value metadata (architecture, hyper-parameters, tokenizer) and named
tensors, optionally block-quantised. We write it with the ``gguf`` package the way llama.cpp's
``convert_hf_to_gguf.py`` does for ``LlamaForCausalLM``:

- hyper-parameters as ``llama.*`` keys; tensors renamed by ``gguf.TensorNameMap``
  (``model.layers.N.self_attn.q_proj.weight`` → ``blk.N.attn_q.weight``);
- Q and K rows permuted: Hugging Face's rotary embedding rotates the two *halves* of each head
  (``rotate_half``), GGML's rotates adjacent *pairs* (the original LLaMA layout, Su et al. 2021
  "RoFormer"), so each head's rows are interleaved (``permute`` below, as ``LlamaModel.permute``);
- tied input/output embeddings: no ``output.weight`` (llama.cpp and transformers then reuse
  ``token_embd.weight``);
- 1-D tensors (RMSNorm gains) stay F32; matrices become F32, F16, Q8_0 or Q4_0 (blocks of 32
  weights sharing one scale: 8.5 / 4.5 bits per weight).

GPT-2-style runs are refused (train with ``model.style=llama``): transformers' GGUF reader, our
independent check, maps ``gpt2.context_length`` to ``n_ctx`` and keeps 1,024 learned positions,
so a file with the run's own context could not be verified.

The vocabulary is the run's own (``tokenizer.json``): a char-level vocabulary as a SentencePiece
-style ("llama") token list in which every character is one piece, so llama.cpp's tokenizer
reproduces the run's ids; a byte-level BPE vocabulary as a "gpt2" token list with its merges.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liandan.errors import LiandanError
from liandan.export._common import atomic_file, destination, first_line, require, run_path, write_manifest

OUTTYPES = ("f32", "f16", "q8_0", "q4_0")
F32_BOUND = 1e-4  # an f32 file must reproduce the logits (measured: 0)


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Q/K rows from Hugging Face's half-split rotary layout to GGML's interleaved pairs, per head."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _llama_run(run_dir: Path) -> Any:
    """The run, refused unless it is a LLaMA-style language model."""
    from liandan.training.run import load_run
    from liandan.training.tasks import task_class

    run = load_run(run_dir)
    if run.recipe.adapter is not None:  # a fine-tune through an adapter: export the merged weights
        from liandan.adapters import merged_copy

        run.model = merged_copy(run.model)
    name = run.recipe.model.name
    if not task_class(run.info.task).generates_text or not hasattr(run.model, "hf"):
        raise LiandanError(f"GGUF export serves language-model runs (task lm, model gpt with model.style=llama); "
                           f"{run_dir} is a {run.info.task!r} run of model {name!r}")
    if run.model.hf.config.model_type != "llama":
        raise LiandanError(f"GGUF export needs a LLaMA-style model; {run_dir} is {run.model.hf.config.model_type!r} "
                           f"(train it with --set model.style=llama)")
    return run


def _hparams(cfg: Any) -> dict[str, Any]:
    rope = dict(getattr(cfg, "rope_parameters", None) or {})
    if rope.get("rope_type", "default") != "default":
        raise LiandanError(f"GGUF export supports plain rotary positions, not rope_type {rope['rope_type']!r}")
    theta = rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return {"context_length": cfg.max_position_embeddings, "embedding_length": cfg.hidden_size,
            "block_count": cfg.num_hidden_layers, "feed_forward_length": cfg.intermediate_size,
            "head_count": cfg.num_attention_heads, "head_count_kv": cfg.num_key_value_heads or cfg.num_attention_heads,
            "rope_dimension_count": head_dim, "rope_freq_base": float(theta), "rms_eps": float(cfg.rms_norm_eps),
            "vocab_size": cfg.vocab_size, "tied": bool(cfg.tie_word_embeddings)}


def _vocab(run: Any, vocab_size: int) -> dict[str, Any]:
    """Token list, scores, types, model and merges from the run's own tokenizer."""
    import gguf

    from liandan.data.tokenize import NUM_SPECIAL, UNK, BPETokenizer, VocabTokenizer, load_tokenizer

    tok = load_tokenizer(run.dir / (run.info.tokenizer or "tokenizer.json"))
    if isinstance(tok, VocabTokenizer):
        if tok.kind != "char":
            raise LiandanError("GGUF export needs a char-level or byte-level BPE vocabulary; this run's word-level "
                               "vocabulary has no GGUF tokenizer model that splits text the same way")
        tokens = [t.replace(" ", "\u2581") if i >= NUM_SPECIAL else t for i, t in enumerate(tok.vocab)]  # SPM space
        model, merges = "llama", None
    elif isinstance(tok, BPETokenizer):
        vocab = tok.tok.get_vocab()
        tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
        raw = json.loads(tok.tok.to_str())["model"].get("merges", [])
        merges = [m if isinstance(m, str) else " ".join(m) for m in raw]
        model = "gpt2"
    else:
        raise LiandanError(f"GGUF export: unsupported tokenizer {type(tok).__name__}")
    if len(tokens) != vocab_size:
        raise LiandanError(f"the tokenizer has {len(tokens)} tokens but the model's vocabulary is {vocab_size}")
    types = [gguf.TokenType.UNKNOWN if i == UNK else gguf.TokenType.CONTROL if i < NUM_SPECIAL
             else gguf.TokenType.NORMAL for i in range(len(tokens))]
    scores = [0.0 if i < NUM_SPECIAL else -float(i) for i in range(len(tokens))]
    return {"tokens": tokens, "scores": scores, "types": types, "model": model, "merges": merges, "tokenizer": tok}


def _encode(w: np.ndarray, outtype: str) -> tuple[np.ndarray, Any, str]:
    """The tensor's bytes (or array) for GGUFWriter, its GGML type and the type's name."""
    import gguf

    Q = gguf.GGMLQuantizationType
    if w.ndim < 2 or outtype == "f32":  # norms stay F32, as llama.cpp keeps them
        return w.astype(np.float32), Q.F32, "F32"
    if outtype == "f16":
        return w.astype(np.float16), Q.F16, "F16"
    qtype = {"q8_0": Q.Q8_0, "q4_0": Q.Q4_0}[outtype]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if w.shape[-1] % block:  # a row that does not fill whole blocks cannot be quantised: F16, as llama.cpp
        return w.astype(np.float16), Q.F16, "F16"
    return gguf.quants.quantize(w.astype(np.float32), qtype), qtype, qtype.name


def _tensors(model: torch.nn.Module, hp: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array) in the model's order; Q/K permuted; a tied lm_head left out."""
    import gguf

    names = gguf.TensorNameMap(gguf.MODEL_ARCH.LLAMA, hp["block_count"])
    out = []
    for key, t in model.state_dict().items():
        if key == "lm_head.weight" and hp["tied"]:
            continue
        if key.endswith("rotary_emb.inv_freq"):
            continue
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise LiandanError(f"GGUF export: no GGUF name for tensor {key!r}")
        w = t.detach().float().cpu().numpy()
        if key.endswith("q_proj.weight"):
            w = permute(w, hp["head_count"])
        elif key.endswith("k_proj.weight"):
            w = permute(w, hp["head_count_kv"])
        out.append((name, w))
    return out


def _write(path: Path, run: Any, hp: dict[str, Any], voc: dict[str, Any], outtype: str) -> dict[str, int]:
    import gguf

    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[outtype]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(run.recipe.name)
    w.add_description(f"liandan run {run.dir.name}: {run.recipe.model.name} (style llama), task lm")
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
    w.add_vocab_size(hp["vocab_size"])
    from liandan.data.tokenize import BOS, EOS, PAD, UNK

    w.add_tokenizer_model(voc["model"])
    if voc["model"] == "gpt2":
        w.add_tokenizer_pre("default")
        w.add_token_merges(voc["merges"])
    w.add_token_list(voc["tokens"])
    w.add_token_scores(voc["scores"])
    w.add_token_types(voc["types"])
    w.add_bos_token_id(BOS)
    w.add_eos_token_id(EOS)
    w.add_unk_token_id(UNK)
    w.add_pad_token_id(PAD)
    w.add_add_bos_token(True)  # every training row starts with <bos>
    w.add_add_space_prefix(False)  # the run never saw a leading space
    types: dict[str, int] = {}
    for name, arr in _tensors(run.model.hf, hp):
        data, qtype, tname = _encode(arr, outtype)
        w.add_tensor(name, data, raw_dtype=qtype if qtype not in (gguf.GGMLQuantizationType.F32,
                                                                   gguf.GGMLQuantizationType.F16) else None)
        types[tname] = types.get(tname, 0) + 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return types


def to_gguf(run_dir: str | Path, out: str | Path | None = None, *, outtype: str = "f32", check: bool = True,
            max_prompts: int = 32) -> dict[str, Any]:
    """Write a LLaMA-style LM run as GGUF (default ``RUN_DIR/export/model-<outtype>.gguf``).

    ``outtype``: ``f32``, ``f16``, ``q8_0`` or ``q4_0``. With ``check`` the temporary file is
    loaded back with ``transformers`` (``LlamaForCausalLM.from_pretrained(dir, gguf_file=...)``,
    an independent reader that also undoes the Q/K permutation) and its logits on up to
    ``max_prompts`` test rows are compared with the run's: max |Δlogit| and greedy-token
    agreement go to ``export.json``; an f32 file must match within 1e-4 or it is not written."""
    if outtype not in OUTTYPES:
        raise LiandanError(f"--outtype {outtype!r}: use one of {', '.join(OUTTYPES)}")
    require("gguf", *(["transformers"] if check else []))
    run_dir = run_path(run_dir)
    path = destination(run_dir, out, f"model-{outtype}.gguf", ".gguf")
    run = _llama_run(run_dir)
    hp = _hparams(run.model.hf.config)
    voc = _vocab(run, hp["vocab_size"])
    with atomic_file(path) as tmp:
        types = _write(tmp, run, hp, voc, outtype)
        entry: dict[str, Any] = {"format": "gguf", "file": path.name, "run": str(run_dir), "arch": "llama",
                                 "outtype": outtype, "tensor_types": types, "tokenizer_model": voc["model"],
                                 "vocab_size": hp["vocab_size"], **_read_back(tmp)}
        if check:
            from liandan.export.gguf_check import compare_logits

            res = compare_logits(tmp, run, max_prompts)
            entry["check"] = res
            if outtype == "f32" and not res["max_abs_diff"] <= F32_BOUND:
                raise LiandanError(f"the f32 GGUF file's logits differ by {res['max_abs_diff']:.3g} > {F32_BOUND:g} "
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
