"""llama.cpp's tokenizers re-implemented in Python, driven only by a GGUF file's ``tokenizer.*`` keys.

A GGUF file is right for llama.cpp only if llama.cpp, reading its metadata, cuts text into the
ids the model was trained on. transformers' GGUF reader cannot tell: it rebuilds a tokenizer from
its own templates and ignores ``tokenizer.ggml.pre``. So this module does what llama.cpp's
``src/llama-vocab.cpp`` and ``src/unicode.cpp`` do, step for step:

- ``gpt2`` model (byte-level BPE, Sennrich et al. 2016; Radford et al. 2019): the text is cut by
  the regex list that ``tokenizer.ggml.pre`` names (text no regex matches stays a piece of its
  own, as in ``unicode_regex_split``), each piece is mapped byte-wise to GPT-2's printable
  alphabet, then the lowest-ranked adjacent pair is merged until none is in the merges
  (leftmost first on equal rank), and each symbol is looked up (one token per byte if absent).
- ``llama`` model (SentencePiece-style, Kudo & Richardson 2018): spaces become ``▁``, the text
  is split into characters, the adjacent pair whose concatenation is a token with the highest
  score is merged repeatedly, and a symbol with no token falls back to its UTF-8 bytes
  ``<0xXX>``; when those tokens are missing llama.cpp aborts, here :class:`LiandanError`.

Tokens llama.cpp always matches whole (USER_DEFINED; CONTROL too with ``parse_special``) are cut
out first, longest first. Regexes are llama.cpp's own spellings (its engine has no ``(?i:...)``).
"""

from __future__ import annotations

import heapq
from functools import lru_cache
from pathlib import Path
from typing import Any

from liandan.errors import LiandanError
from liandan.export.gguf_vocab import BYTE, CONTROL, SPM_SPACE, USER_DEFINED, Vocab, byte_token

# llama-vocab.cpp: LLAMA_VOCAB_PRE_TYPE_GPT2 and LLAMA_VOCAB_PRE_TYPE_QWEN2
PRE_REGEXES: dict[str, list[str]] = {
    "gpt-2": [r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"],
    "qwen2": [r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
              r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
}


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (``unicode_byte_to_utf8`` in llama.cpp)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, n = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(keep, chars, strict=True)}


def regex_split(text: str, patterns: list[str]) -> list[str]:
    """``unicode_regex_split``: each regex cuts every current piece; unmatched text stays a piece."""
    import regex

    pieces = [text]
    for pat in patterns:
        rx = regex.compile(pat)
        out: list[str] = []
        for piece in pieces:
            pos = 0
            for m in rx.finditer(piece):
                if m.end() == m.start():
                    continue
                if m.start() > pos:
                    out.append(piece[pos:m.start()])
                out.append(m.group())
                pos = m.end()
            if pos < len(piece):
                out.append(piece[pos:])
        pieces = out
    return pieces


class LlamaCppTokenizer:
    """Encode text as llama.cpp would with the given vocabulary (``tokenizer.*`` keys)."""

    def __init__(self, vocab: Vocab) -> None:
        self.v = vocab
        self.ids = {t: i for i, t in enumerate(vocab.tokens)}
        if vocab.model == "gpt2":
            if vocab.pre not in PRE_REGEXES:
                raise LiandanError(f"no llama.cpp pre-tokenizer {vocab.pre!r} here; known: {', '.join(PRE_REGEXES)}")
            self.ranks = {tuple(m.split(" ", 1)): r for r, m in enumerate(vocab.merges or [])}
        elif vocab.model != "llama":
            raise LiandanError(f"tokenizer model {vocab.model!r}: only gpt2 and llama are re-implemented")

    @classmethod
    def from_gguf(cls, path: str | Path) -> LlamaCppTokenizer:
        """Read the vocabulary back from a GGUF file with gguf's reader (what llama.cpp reads)."""
        import gguf

        f = gguf.GGUFReader(str(path)).fields

        def get(key: str, default: Any = None) -> Any:
            return f[key].contents() if key in f else default

        model = get("tokenizer.ggml.model")
        voc = Vocab(model, get("tokenizer.ggml.tokens"), get("tokenizer.ggml.token_type"),
                    get("tokenizer.ggml.scores"), pre=get("tokenizer.ggml.pre"), merges=get("tokenizer.ggml.merges"),
                    bos=get("tokenizer.ggml.bos_token_id"), eos=get("tokenizer.ggml.eos_token_id"),
                    add_bos=bool(get("tokenizer.ggml.add_bos_token", model == "llama")),
                    add_eos=bool(get("tokenizer.ggml.add_eos_token", False)),
                    add_space_prefix=bool(get("tokenizer.ggml.add_space_prefix", model == "llama")))
        return cls(voc)

    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        out = [self.v.bos] if add_special and self.v.add_bos and self.v.bos is not None else []
        for piece, tid in self._partition(text, parse_special):
            if tid is not None:
                out.append(tid)
            elif self.v.model == "gpt2":
                out += self._bpe(piece)
            else:
                out += self._spm(piece)
        if add_special and self.v.add_eos and self.v.eos is not None:
            out.append(self.v.eos)
        return out

    def _partition(self, text: str, parse_special: bool) -> list[tuple[str, int | None]]:
        """Cut out tokens llama.cpp matches whole (``tokenizer_st_partition``), longest first."""
        kinds = (USER_DEFINED, CONTROL) if parse_special else (USER_DEFINED,)
        whole = sorted((t for t, k in zip(self.v.tokens, self.v.types, strict=True) if k in kinds and t),
                       key=len, reverse=True)
        parts: list[tuple[str, int | None]] = [(text, None)]
        for tok in whole:
            nxt: list[tuple[str, int | None]] = []
            for piece, tid in parts:
                if tid is not None or tok not in piece:
                    nxt.append((piece, tid))
                    continue
                for k, chunk in enumerate(piece.split(tok)):
                    if k:
                        nxt.append((tok, self.ids[tok]))
                    if chunk:
                        nxt.append((chunk, None))
            parts = nxt
        return parts

    def _bpe(self, text: str) -> list[int]:
        enc = bytes_to_unicode()
        out: list[int] = []
        for word in regex_split(text, PRE_REGEXES[self.v.pre]):
            for sym in _merge_lowest_rank([enc[b] for b in word.encode("utf-8")], self.ranks):
                if sym in self.ids:
                    out.append(self.ids[sym])
                else:  # llama.cpp: one token per byte character it can find
                    out += [self.ids[c] for c in sym if c in self.ids]
        return out

    def _spm(self, text: str) -> list[int]:
        text = text.replace(" ", SPM_SPACE)
        if self.v.add_space_prefix:
            text = SPM_SPACE + text
        out: list[int] = []
        for sym in _merge_highest_score(list(text), self.ids, self.v.scores or []):
            if sym in self.ids and self.v.types[self.ids[sym]] != BYTE:
                out.append(self.ids[sym])
                continue
            for b in sym.encode("utf-8"):  # byte fallback: <0xXX>, or llama.cpp aborts
                name = byte_token(b)
                if name not in self.ids:
                    raise LiandanError(f"llama.cpp would abort on {sym!r}: the vocabulary has no byte token {name}")
                out.append(self.ids[name])
        return out


def _merge_lowest_rank(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """BPE: merge the adjacent pair with the lowest merge rank (leftmost first) until none is left."""
    while len(symbols) > 1:
        best, at = None, -1
        for i in range(len(symbols) - 1):
            r = ranks.get((symbols[i], symbols[i + 1]))
            if r is not None and (best is None or r < best):
                best, at = r, i
        if best is None:
            break
        symbols[at:at + 2] = [symbols[at] + symbols[at + 1]]
    return symbols


def _merge_highest_score(symbols: list[str], ids: dict[str, int], scores: list[float]) -> list[str]:
    """SentencePiece BPE: merge the adjacent pair whose concatenation is a token with the highest score."""
    heap: list[tuple[float, int]] = []
    while len(symbols) > 1:
        heap.clear()
        for i in range(len(symbols) - 1):
            tid = ids.get(symbols[i] + symbols[i + 1])
            if tid is not None:
                heapq.heappush(heap, (-(scores[tid] if tid < len(scores) else 0.0), i))
        if not heap:
            break
        _, at = heap[0]
        symbols[at:at + 2] = [symbols[at] + symbols[at + 1]]
    return symbols
