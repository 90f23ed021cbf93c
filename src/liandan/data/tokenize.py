"""Tokenizers: a tiny character- or word-level vocabulary of our own, and byte-level BPE
(Sennrich et al. 2016; byte-level as in GPT-2, Radford et al. 2019) trained on the corpus with
the Hugging Face ``tokenizers`` package.

Both save to one ``tokenizer.json`` in the run directory, so ``generate``/``evaluate`` reload the
exact vocabulary the model was trained with. Every tokenizer puts the same special tokens first
(ids ``0..NUM_SPECIAL-1``), so code that must never mask or sample a special token tests
``id < NUM_SPECIAL`` instead of carrying a list around.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from liandan.errors import LiandanError

SPECIALS = ("<pad>", "<bos>", "<eos>", "<mask>", "<unk>")
PAD, BOS, EOS, MASK, UNK = range(len(SPECIALS))  # padding is id 0 everywhere
NUM_SPECIAL = len(SPECIALS)
FILE = "tokenizer.json"


class VocabTokenizer:
    """Character- or whitespace-word-level tokenizer over a fixed vocabulary (specials first)."""

    def __init__(self, kind: str, symbols: Iterable[str]) -> None:
        if kind not in ("char", "word"):
            raise LiandanError(f"tokenizer kind must be char or word, got {kind!r}")
        self.kind = kind
        self.vocab = [*SPECIALS, *sorted(set(symbols) - set(SPECIALS))]
        self.index = {s: i for i, s in enumerate(self.vocab)}

    @classmethod
    def fit(cls, kind: str, texts: Iterable[str]) -> VocabTokenizer:
        """The vocabulary of every symbol in ``texts``."""
        symbols: set[str] = set()
        for t in texts:
            symbols.update(t if kind == "char" else t.split())
        return cls(kind, symbols)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        parts = text if self.kind == "char" else text.split()
        return [self.index.get(p, UNK) for p in parts]

    def decode(self, ids: Iterable[int]) -> str:
        parts = [self.vocab[i] for i in ids if i >= NUM_SPECIAL and i < len(self.vocab)]
        return ("" if self.kind == "char" else " ").join(parts)

    def to_hf(self) -> Any:
        """The same vocabulary as a ``transformers`` fast tokenizer (for ``RUN/hf``: PEFT, TRL, pipelines)."""
        from tokenizers import Regex, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as HFTokenizer

        tok = HFTokenizer(models.WordLevel(vocab=dict(self.index), unk_token=SPECIALS[UNK]))
        if self.kind == "char":  # every character its own token, joined back without spaces
            tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
            tok.decoder = decoders.Fuse()
        else:
            tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return _fast(tok)

    def save(self, path: str | Path) -> Path:
        path = _file(path)
        path.write_text(json.dumps({"liandan_tokenizer": self.kind, "vocab": self.vocab}, ensure_ascii=False))
        return path


class BPETokenizer:
    """Byte-level BPE: any text encodes (no unknown symbols), merges learned from the corpus."""

    def __init__(self, tok: Any) -> None:
        self.tok = tok  # a tokenizers.Tokenizer

    @classmethod
    def fit(cls, texts: Iterable[str], vocab_size: int = 512) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        # the 256 byte symbols always belong to the alphabet, so nothing is ever out of vocabulary
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(list(texts), trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode([i for i in ids if i >= NUM_SPECIAL])

    def to_hf(self) -> Any:
        """The same tokenizer as a ``transformers`` fast tokenizer."""
        return _fast(self.tok)

    def save(self, path: str | Path) -> Path:
        path = _file(path)
        self.tok.save(str(path))
        return path


def _fast(tok: Any) -> Any:
    """``tok`` as a transformers tokenizer that encodes as the run did: ``<bos>`` first (every
    lm sequence starts with it, and ``liandan generate`` prepends it), so plain transformers
    generation sees the same ids. A copy: the run's own tokenizer is not changed."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    tok = HFTokenizer.from_str(tok.to_str())
    tok.post_processor = TemplateProcessing(single=f"{SPECIALS[BOS]} $A", pair=f"{SPECIALS[BOS]} $A $B:1",
                                            special_tokens=[(SPECIALS[BOS], BOS)])
    names = dict(zip(("pad_token", "bos_token", "eos_token", "mask_token", "unk_token"), SPECIALS, strict=True))
    return PreTrainedTokenizerFast(tokenizer_object=tok, **names)


Tokenizer = VocabTokenizer | BPETokenizer


def fit_tokenizer(kind: str, texts: list[str], vocab_size: int = 512) -> Tokenizer:
    """``char``, ``word`` or ``bpe`` (byte-level, ``vocab_size`` entries) fitted on ``texts``."""
    if kind == "bpe":
        if vocab_size < 256 + NUM_SPECIAL:
            raise LiandanError(f"data.vocab_size={vocab_size}: byte-level BPE needs at least {256 + NUM_SPECIAL}")
        return BPETokenizer.fit(texts, vocab_size)
    if kind in ("char", "word"):
        return VocabTokenizer.fit(kind, texts)
    raise LiandanError(f"data.tokenizer: unknown tokenizer {kind!r}; available: char, word, bpe")


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Reload a tokenizer saved by :meth:`save` (a run directory or the file itself)."""
    from liandan.paths import check_path, read_text

    path = check_path(_file(path, create=False), "tokenizer")  # data.json names it: checked under the roots
    if not path.is_file():
        raise LiandanError(f"no tokenizer at {path}: the run was not trained on token data")
    text = read_text(path, "tokenizer")
    doc = json.loads(text)
    if "liandan_tokenizer" in doc:
        return VocabTokenizer(doc["liandan_tokenizer"], doc["vocab"][NUM_SPECIAL:])
    from tokenizers import Tokenizer as HFTokenizer

    return BPETokenizer(HFTokenizer.from_str(text))


def _file(path: str | Path, create: bool = True) -> Path:
    path = Path(path)
    if path.suffix != ".json":
        if create:
            path.mkdir(parents=True, exist_ok=True)
        path = path / FILE
    return path
