"""What a GGUF export starts from: a liandan language-model run, or a Hugging Face ``save_pretrained``
directory (a merged fine-tune, ``RUN/hf``, any LLaMA- or Qwen2-architecture model with its tokenizer).

Either way the exporter gets the same :class:`Source`: the model as its transformers class (float32,
eval), the GGUF vocabulary (:mod:`liandan.export.gguf_vocab`), prompts to compare logits on, sample
texts with the ids the model's own tokenizer gives them (the reference for llama.cpp's tokenizer),
and where the file goes by default (``DIR/export/``).
"""

from __future__ import annotations

import json
import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from liandan.errors import LiandanError
from liandan.export.gguf_vocab import CONTROL, NORMAL, USER_DEFINED, Vocab, bpe_vocab, char_vocab, hf_vocab

ARCHS = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}  # HF class -> GGUF architecture


@dataclass
class Source:
    kind: str  # "run" or "hf"
    path: Path
    model: torch.nn.Module  # LlamaForCausalLM / Qwen2ForCausalLM, float32, eval
    arch: str  # "llama" or "qwen2"
    vocab: Vocab
    name: str
    description: str
    prompts: list[list[int]]  # token ids (with <bos> where the tokenizer adds it)
    texts: list[str]  # sample texts for the tokenizer check
    encode: Callable[[str], list[int]]  # the model's own tokenizer, specials as in training
    default_dir: Path
    oov_text: str | None = None  # text with characters outside a char vocabulary (byte fallback)


def is_hf_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and not (path / "recipe.yaml").is_file()


def open_source(path: str | Path, max_prompts: int = 32, n_texts: int = 300) -> Source:
    """A run directory or a ``save_pretrained`` directory, ready to export (or a one-line refusal)."""
    from liandan.paths import check_path

    p = Path(check_path(path, "export source"))
    if not p.is_dir():
        raise LiandanError(f"{p} is not a directory (give a run directory or a save_pretrained directory)")
    if is_hf_dir(p):
        return _hf_source(p, max_prompts, n_texts)
    from liandan.export._common import run_path

    return _run_source(run_path(p), max_prompts)


# --- liandan runs -------------------------------------------------------------------------------


def _run_source(run_dir: Path, max_prompts: int) -> Source:
    from liandan.data.tokenize import BOS, EOS, NUM_SPECIAL, PAD, UNK, BPETokenizer, VocabTokenizer
    from liandan.export.gguf_check import prompt_ids, run_tokenizer
    from liandan.training.run import load_run
    from liandan.training.tasks import task_class

    run = load_run(run_dir)
    if run.recipe.adapter is not None:  # a fine-tune through an adapter: export the merged weights
        from liandan.adapters import merged_copy

        run.model = merged_copy(run.model)
    name = run.recipe.model.name
    if not task_class(run.info.task).generates_text or not hasattr(run.model, "hf"):
        raise LiandanError(f"GGUF export serves language-model runs (task lm, model gpt with model.style=llama) "
                           f"and save_pretrained directories; {run_dir} is a {run.info.task!r} run of model {name!r}")
    hf = run.model.hf
    if hf.config.model_type != "llama":
        raise LiandanError(f"GGUF export needs a LLaMA-style model; {run_dir} is {hf.config.model_type!r} "
                           f"(train it with --set model.style=llama)")
    tok = run_tokenizer(run)
    if isinstance(tok, VocabTokenizer):
        if tok.kind != "char":
            raise LiandanError("GGUF export needs a char-level or byte-level BPE vocabulary; this run's word-level "
                               "vocabulary has no GGUF tokenizer model that splits text the same way")
        vocab = char_vocab(tok.vocab, NUM_SPECIAL, UNK, BOS, EOS, PAD)
    elif isinstance(tok, BPETokenizer):
        vocab = bpe_vocab(json.loads(tok.tok.to_str()), hf.config.vocab_size)
        vocab.bos, vocab.eos, vocab.unk, vocab.pad, vocab.add_bos = BOS, EOS, UNK, PAD, True
    else:
        raise LiandanError(f"GGUF export: unsupported tokenizer {type(tok).__name__}")
    rows = [r[: r.index(PAD)] if PAD in r else r for r in prompt_ids(run, max_prompts).tolist()]
    rows = [r for r in rows if r]
    texts = [tok.decode(r) for r in rows]
    oov = None
    if vocab.model == "llama":  # characters the run never saw: a space, an accent, a CJK character
        oov = "".join(c for c in " é中\t" if c not in tok.index) + (texts[0] if texts else "")
    return Source("run", run_dir, hf.float().eval(), "llama", vocab, run.recipe.name,
                  f"liandan run {run_dir.name}: {name} (style llama), task lm", rows, texts,
                  lambda t: [BOS, *tok.encode(t)], run_dir / "export", oov)


# --- Hugging Face directories -------------------------------------------------------------------


def _hf_source(model_dir: Path, max_prompts: int, n_texts: int) -> Source:
    from transformers import AutoConfig, AutoModelForCausalLM

    from liandan.export._common import silenced

    try:
        config = AutoConfig.from_pretrained(str(model_dir))
    except Exception as e:  # noqa: BLE001 (an unreadable config.json: one line)
        raise LiandanError(f"transformers cannot read {model_dir}/config.json: {e}") from None
    archs = list(getattr(config, "architectures", None) or [])
    arch = next((ARCHS[a] for a in archs if a in ARCHS), None)
    if arch is None:
        raise LiandanError(f"GGUF export of a save_pretrained directory supports {', '.join(ARCHS)}; "
                           f"{model_dir} holds {archs or config.model_type!r}")
    if not any((model_dir / f).is_file() for f in ("model.safetensors", "model.safetensors.index.json")):
        raise LiandanError(f"{model_dir} has no model.safetensors: only safetensors weights are read "
                           f"(pickled .bin files can run code)")
    try:
        with silenced():
            model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, use_safetensors=True)
    except Exception as e:  # noqa: BLE001
        raise LiandanError(f"transformers cannot load the model in {model_dir}: {str(e).splitlines()[0]}") from None
    vocab, tok = hf_vocab(model_dir, config)

    def encode(text: str) -> list[int]:
        return tok(text)["input_ids"]

    texts = sample_texts(vocab, n_texts)
    ctx = config.max_position_embeddings
    prompts = [ids[:ctx] for ids in map(encode, texts[:max_prompts]) if ids]
    name = model_dir.resolve().name
    return Source("hf", model_dir, model.eval(), arch, vocab, name,
                  f"{archs[0]} from {name} (save_pretrained directory), converted by liandan",
                  prompts, texts, encode, model_dir / "export")


WORDS = ("the", "quick", "brown", "fox", "I've", "they'RE", "don't", "we'll", "ALL", "CamelCase", "naïve",
         "café", "Straße", "日本語", "中文", "한국어", "Ελληνικά", "кириллица", "emoji🙂", "🚀", "x²", "٣٤")
PUNCT = (".", ",", "!", "?", "...", "--", "==", "()", "[]", "{}", "'", '"', "''", "``", "$", "%", "#", "@", "<", ">")
SPACES = (" ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", " \n", "\r\n")


def sample_texts(vocab: Vocab, n: int, seed: int = 0) -> list[str]:
    """``n`` generated strings that exercise a pre-tokenizer: words (contractions, accents, CJK,
    emoji), numbers of every length, punctuation runs, whitespace runs and newlines, half of them
    built from the vocabulary's own tokens (byte-decoded) so merges are exercised. In NFC, the form
    llama.cpp's un-normalised input and a normalising tokenizer agree on."""
    from liandan.export.llamacpp_tokenizer import bytes_to_unicode

    rng = random.Random(seed)
    dec = {c: b for b, c in bytes_to_unicode().items()}
    normal = [t for t, k in zip(vocab.tokens, vocab.types, strict=True) if k == NORMAL]
    whole = [t for t, k in zip(vocab.tokens, vocab.types, strict=True) if k in (CONTROL, USER_DEFINED) and t]

    def piece(t: str) -> str:
        if vocab.model != "gpt2":
            return t.replace("\u2581", " ")
        return bytes(dec[c] for c in t if c in dec).decode("utf-8", errors="ignore")

    out = []
    for i in range(n):
        parts: list[str] = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if i % 2 and normal and r < 0.6:
                parts.append(piece(rng.choice(normal)))
            elif r < 0.75:
                parts.append(rng.choice(WORDS))
            elif r < 0.85:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 9))))
            else:
                parts.append(rng.choice(PUNCT))
            parts.append(rng.choice(SPACES) if rng.random() < 0.7 else "")
        text = unicodedata.normalize("NFC", "".join(parts))
        for t in whole:  # a special token's spelling in plain text is matched differently by design
            text = text.replace(t, "")
        out.append(text)
    return out


def source_summary(src: Source) -> dict[str, Any]:
    return {"source": str(src.path), "source_kind": src.kind, "arch": src.arch}
