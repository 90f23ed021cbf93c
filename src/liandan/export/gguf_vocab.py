"""The GGUF tokenizer metadata llama.cpp needs, from a run's tokenizer or a Hugging Face ``tokenizer.json``.

llama.cpp re-implements every tokenizer it supports and picks one from two keys:
``tokenizer.ggml.model`` (``llama``: SentencePiece-style pieces; ``gpt2``: byte-level BPE with
merges) and, for BPE, ``tokenizer.ggml.pre``, the *name* of a pre-tokenizer regex compiled into
llama.cpp (``src/llama-vocab.cpp``). The regex is not in the file, so the name must be the one
whose regex splits text as the model's tokenizer did in training; ``convert_hf_to_gguf.py``
finds it by hashing a probe tokenisation, which fails for any vocabulary it has not seen. We read
the ``tokenizer.json`` pre-tokenizer itself instead:

- ``ByteLevel(use_regex=True, add_prefix_space=False)`` alone: GPT-2's regex (Radford et al.
  2019): ``"gpt-2"``. llama.cpp's ``"default"`` splits digits and punctuation further, so a file
  that says ``"default"`` tokenises unlike training.
- ``Split(<Qwen2 regex>, isolated)`` then ``ByteLevel(use_regex=False)``: ``"qwen2"`` (its NFC
  normaliser is not run by llama.cpp, as in ``convert_hf_to_gguf.py``; NFC text is unaffected).

Anything else is refused with one line rather than written with a guess.

A char-level vocabulary becomes a ``llama`` (SentencePiece-style) list, one piece per character,
plus the 256 byte tokens ``<0x00>``…``<0xFF>`` (type BYTE): llama.cpp's SentencePiece tokenizer
falls back to them for a character it has no piece for, and aborts the process when they are
missing. A vocabulary without a space also gets the piece ``▁`` (llama.cpp turns every space
into it first). The model's embedding grows by those rows, copies of ``<unk>``'s (see
``gguf_export``), so an unknown character means to the model what the run's own tokenizer makes
of it: ``<unk>`` (one per UTF-8 byte for a character beyond ASCII; exactly the run's ids for a space).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liandan.errors import LiandanError

# Qwen2's pre-tokenizer regex, as its tokenizer.json and transformers' Qwen2Tokenizer spell it
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")
N_BYTES = 256
SPM_SPACE = "\u2581"  # SentencePiece's visible space: llama.cpp replaces " " with it before lookup

# gguf.TokenType values (llama.cpp's llama_token_type), kept here so this module imports no gguf
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass
class Vocab:
    """Everything ``tokenizer.*`` in a GGUF file says, and how the model's embedding must change."""

    model: str  # tokenizer.ggml.model: "llama" or "gpt2"
    tokens: list[str]
    types: list[int]
    scores: list[float] | None = None
    pre: str | None = None  # tokenizer.ggml.pre (gpt2 model only)
    merges: list[str] | None = None
    bos: int | None = None
    eos: int | None = None
    unk: int | None = None
    pad: int | None = None
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool = False
    chat_template: str | None = None
    byte_rows_from: int | None = None  # token whose embedding row the appended byte tokens copy
    notes: list[str] = field(default_factory=list)

    @property
    def n_byte_tokens(self) -> int:
        return sum(t == BYTE for t in self.types)

    def summary(self) -> dict[str, Any]:
        """What export.json records about the tokenizer."""
        return {"model": self.model, "pre": self.pre, "tokens": len(self.tokens),
                "merges": len(self.merges or []), "byte_tokens": self.n_byte_tokens,
                "control_tokens": sum(t == CONTROL for t in self.types),
                "bos": self.bos, "eos": self.eos, "pad": self.pad, "unk": self.unk,
                "add_bos": self.add_bos, "add_eos": self.add_eos,
                "chat_template": self.chat_template is not None, **({"notes": self.notes} if self.notes else {})}


def byte_token(b: int) -> str:
    return f"<0x{b:02X}>"


def char_vocab(symbols: list[str], n_special: int, unk: int, bos: int, eos: int, pad: int) -> Vocab:
    """A char-level vocabulary (specials first) as SentencePiece-style pieces plus the 256 byte tokens."""
    tokens = [s.replace(" ", SPM_SPACE) if i >= n_special else s for i, s in enumerate(symbols)]
    types = [UNKNOWN if i == unk else CONTROL if i < n_special else NORMAL for i in range(len(tokens))]
    # llama.cpp merges adjacent pieces by score; one character per piece leaves nothing to merge
    scores = [0.0 if i < n_special else -float(i) for i in range(len(tokens))]
    taken = set(tokens)
    clash = [byte_token(b) for b in range(N_BYTES) if byte_token(b) in taken]
    if clash:
        raise LiandanError(f"GGUF export: the vocabulary already holds {clash[0]!r}, a byte-fallback token name")
    if SPM_SPACE not in taken:  # llama.cpp writes a space as "▁" and, without that piece, as its 3 UTF-8
        tokens.append(SPM_SPACE)  # bytes; one piece with <unk>'s row gives the model the run's <unk> instead
        types.append(NORMAL)
        scores.append(-float(len(scores)))
    tokens += [byte_token(b) for b in range(N_BYTES)]
    types += [BYTE] * N_BYTES
    scores += [0.0] * N_BYTES
    return Vocab("llama", tokens, types, scores, bos=bos, eos=eos, unk=unk, pad=pad, add_bos=True,
                 byte_rows_from=unk)


def _flatten(node: dict | None, key: str) -> list[dict]:
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [p for sub in node.get(key, []) for p in _flatten(sub, key)]
    return [node]


def _pattern(split: dict) -> str | None:
    pat = split.get("pattern", {})
    return pat.get("Regex") if isinstance(pat, dict) else None


def detect_pre(doc: dict[str, Any]) -> tuple[str, list[str]]:
    """llama.cpp's ``tokenizer.ggml.pre`` name for a byte-level BPE ``tokenizer.json`` (and notes)."""
    model = doc.get("model") or {}
    if model.get("type") != "BPE":
        hint = " (for a liandan char-level run's RUN/hf, export the run directory itself)" \
            if model.get("type") == "WordLevel" else ""
        raise LiandanError(f"GGUF export supports byte-level BPE tokenizers (gpt-2, qwen2 style); this "
                           f"tokenizer.json has a {model.get('type')!r} model{hint}")
    if model.get("byte_fallback") or model.get("ignore_merges"):
        flag = "byte_fallback" if model.get("byte_fallback") else "ignore_merges"
        raise LiandanError(f"GGUF export: a BPE tokenizer with {flag} (SentencePiece / Llama-3 style) has no "
                           f"llama.cpp pre-tokenizer we verify; supported: gpt-2, qwen2")
    pres = _flatten(doc.get("pre_tokenizer"), "pretokenizers")
    norms = _flatten(doc.get("normalizer"), "normalizers")
    kinds = [p.get("type") for p in pres]
    notes: list[str] = []
    if any(n.get("type") != "NFC" for n in norms):
        raise LiandanError(f"GGUF export: llama.cpp runs no normalizer; this tokenizer normalises with "
                           f"{[n.get('type') for n in norms]}")
    if norms:
        notes.append("the tokenizer's NFC normalizer is not run by llama.cpp (text already in NFC is unaffected)")
    if (doc.get("decoder") or {}).get("type") not in ("ByteLevel", None):
        raise LiandanError(f"GGUF export: a byte-level BPE needs a ByteLevel decoder, not "
                           f"{doc['decoder'].get('type')!r}")
    if kinds == ["ByteLevel"] and pres[0].get("use_regex", True):
        if pres[0].get("add_prefix_space"):
            raise LiandanError("GGUF export: ByteLevel(add_prefix_space=True) adds a space llama.cpp's gpt-2 "
                               "pre-tokenizer does not")
        return "gpt-2", notes
    if (kinds == ["Split", "ByteLevel"] and _pattern(pres[0]) == QWEN2_REGEX and not pres[1].get("use_regex", True)
            and not pres[1].get("add_prefix_space") and str(pres[0].get("behavior")).lower() == "isolated"
            and not pres[0].get("invert")):
        return "qwen2", notes
    desc = ", ".join(f"{k}({_pattern(p)!r})" if k == "Split" else str(k) for k, p in zip(kinds, pres, strict=True))
    raise LiandanError(f"GGUF export: pre-tokenizer [{desc}] is not one llama.cpp implements as we can verify; "
                       f"supported: gpt-2 (ByteLevel) and qwen2 (Qwen2's Split regex + ByteLevel)")


def bpe_vocab(doc: dict[str, Any], vocab_size: int) -> Vocab:
    """Tokens (padded to the model's ``vocab_size`` with unused ``[PADi]``), types and merges of a
    byte-level BPE ``tokenizer.json``, as ``convert_hf_to_gguf.py``'s ``get_vocab_base`` lays them out."""
    pre, notes = detect_pre(doc)
    by_id: dict[int, str] = {i: t for t, i in doc["model"]["vocab"].items()}
    added = {a["id"]: a for a in doc.get("added_tokens", [])}
    for i, a in added.items():
        by_id[i] = a["content"]
    if by_id and max(by_id) >= vocab_size:
        raise LiandanError(f"the tokenizer has token id {max(by_id)} but the model's vocabulary is {vocab_size}")
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
        else:
            tokens.append(by_id[i])
            types.append((CONTROL if added[i].get("special") else USER_DEFINED) if i in added else NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in doc["model"].get("merges", [])]
    return Vocab("gpt2", tokens, types, pre=pre, merges=merges, notes=notes)


def hf_vocab(model_dir: Path, config: Any) -> tuple[Vocab, Any]:
    """The vocabulary of a ``save_pretrained`` directory's tokenizer (``tokenizer.json`` plus what
    transformers makes of ``tokenizer_config.json``: special tokens, whether it adds them, the chat
    template) and the transformers tokenizer itself."""
    from transformers import AutoTokenizer

    from liandan.paths import read_text

    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise LiandanError(f"{model_dir} has no tokenizer.json (GGUF export needs the fast tokenizer's file)")
    doc = json.loads(read_text(path, "tokenizer"))
    voc = bpe_vocab(doc, config.vocab_size)
    try:
        tok = AutoTokenizer.from_pretrained(str(model_dir))
    except Exception as e:  # noqa: BLE001 (a directory transformers cannot read: one line)
        raise LiandanError(f"transformers cannot load the tokenizer in {model_dir}: {e}") from None
    voc.bos = tok.bos_token_id if tok.bos_token_id is not None else getattr(config, "bos_token_id", None)
    voc.eos = tok.eos_token_id if tok.eos_token_id is not None else _first(getattr(config, "eos_token_id", None))
    voc.pad, voc.unk = tok.pad_token_id, tok.unk_token_id
    with_special = tok("a")["input_ids"]
    plain = tok("a", add_special_tokens=False)["input_ids"]
    voc.add_bos = voc.bos is not None and len(with_special) > len(plain) and with_special[0] == voc.bos
    voc.add_eos = voc.eos is not None and len(with_special) > len(plain) and with_special[-1] == voc.eos
    template = getattr(tok, "chat_template", None)
    voc.chat_template = template if isinstance(template, str) else None
    return voc, tok


def _first(x: Any) -> int | None:
    return x[0] if isinstance(x, list | tuple) else x
