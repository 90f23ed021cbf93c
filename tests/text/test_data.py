"""Token sources and tokenizers: shapes, seeds, pair alignment, masking statistics, round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from liandan.data.pipeline import build_data
from liandan.data.text import IGNORE, lm_pairs, mask_tokens
from liandan.data.textgen import LEXICON, TRANSITIVE, break_agreement, problem, sentence, working
from liandan.data.tokenize import BOS, EOS, MASK, NUM_SPECIAL, PAD, fit_tokenizer, load_tokenizer
from liandan.errors import LiandanError
from liandan.recipe import DataConfig

CORPUS = ["the quick brown fox jumps over the lazy dog", "naïve café — déjà vu 🙂", "a b c", "x" * 40]


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_tokenizer_round_trip_and_reload(kind: str, tmp_path) -> None:
    tok = fit_tokenizer(kind, CORPUS * 5, vocab_size=300)
    for text in CORPUS:
        ids = tok.encode(text)
        assert min(ids) >= NUM_SPECIAL  # text never encodes to a special id
        expect = text if kind != "word" else " ".join(text.split())
        assert tok.decode(ids) == expect
    path = tok.save(tmp_path)
    again = load_tokenizer(path)
    assert again.vocab_size == tok.vocab_size
    assert all(again.encode(t) == tok.encode(t) for t in CORPUS)
    assert tok.decode([BOS, *tok.encode("a b c"), EOS, PAD]) == "a b c"  # specials are dropped


def test_bpe_merges_and_encodes_unseen_bytes() -> None:
    tok = fit_tokenizer("bpe", ["hello world"] * 50, vocab_size=300)
    assert len(tok.encode("hello world")) < len("hello world")  # merges learned
    assert tok.decode(tok.encode("ζ unseen ∑")) == "ζ unseen ∑"  # byte-level: nothing is out of vocabulary
    with pytest.raises(LiandanError, match="at least"):
        fit_tokenizer("bpe", ["x"], vocab_size=100)


def test_lm_pairs_shift_and_ignore_prompt_and_padding() -> None:
    x, y = lm_pairs([[1, 10, 11, 12, 2], [1, 13, 2]], 6, starts=[3, 1])
    assert x[0].tolist() == [1, 10, 11, 12, 0, 0]
    assert y[0].tolist() == [IGNORE, IGNORE, 12, 2, IGNORE, IGNORE]  # tokens from position 3 on are learned
    assert y[1].tolist() == [13, 2, IGNORE, IGNORE, IGNORE, IGNORE]


def test_masking_is_80_10_10_and_never_touches_specials() -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(NUM_SPECIAL, 100, (400, 50))
    ids[:, 0], ids[:, -5:] = BOS, PAD
    x, y = mask_tokens(ids, 0.15, 100, g)
    chosen = y != IGNORE
    assert not chosen[:, 0].any() and not chosen[:, -5:].any()
    assert torch.equal(y[chosen], ids[chosen]) and torch.equal(x[~chosen], ids[~chosen])
    assert abs(chosen.float().sum() / (400 * 45) - 0.15) < 0.01
    as_mask = (x[chosen] == MASK).float().mean()
    kept = (x[chosen] == ids[chosen]).float().mean()  # kept, or replaced by chance with the same id
    assert abs(as_mask - 0.8) < 0.02 and abs(kept - 0.1) < 0.02
    assert (x[chosen] >= NUM_SPECIAL).logical_or(x[chosen] == MASK).all()


def test_arith_working_and_answers() -> None:
    assert problem(12, 34, "+", False, False) == ("12+34=", "46")
    assert problem(57, 68, "+", True, False) == ("57+68=", "7+8=15,5+6+1=12|125")
    assert problem(52, 17, "-", True, False) == ("52-17=", "12-7=5,4-1=3|35")
    assert problem(17, 52, "-", False, True) == ("17-52=", "-53")  # reversed digits, sign first
    assert working(23, 45, "*") == "23*5=115,23*40=920"
    rng = np.random.default_rng(0)
    for a, b in rng.integers(0, 1000, (200, 2)).tolist():
        for op, f in (("+", a + b), ("-", a - b), ("*", a * b)):
            assert int(problem(a, b, op, True, False)[1].split("|")[1]) == f


def test_arith_source_is_seeded_distinct_and_learns_the_answer_only() -> None:
    a = build_data(DataConfig(source="arith", n=300), seed=0)
    b = build_data(DataConfig(source="arith", n=300), seed=0)
    c = build_data(DataConfig(source="arith", n=300), seed=1)
    assert torch.equal(a.source.x, b.source.x) and not torch.equal(a.source.x, c.source.x)
    tok, info = a.source.tokenizer, a.info
    assert info.task == "lm" and info.vocab_size == tok.vocab_size and info.max_len == a.source.x.shape[1]
    texts = {tok.decode(r) for r in a.source.x.tolist()}
    assert len(texts) == 300  # problems are drawn without replacement
    x, y = a.source.x[0].tolist(), a.source.y[0].tolist()
    text = tok.decode(x)
    lhs, rhs = text.split("=")
    learned = [t for t in y if t != IGNORE]
    assert tok.decode(learned) == rhs and learned[-1] == EOS and eval(lhs) == int(rhs)  # noqa: S307
    xb, yb = next(iter(a.train.epoch(0)))
    assert xb.dtype == torch.int64 and xb.shape == yb.shape


def test_grammar_agrees_and_masks_fixed_per_seed() -> None:
    rng = np.random.default_rng(0)
    adjectives = {v[1] for v in LEXICON.values()}
    verbs = {v[2] for v in LEXICON.values() if v[2]} | {v for c in TRANSITIVE.values() for v in c}
    for _ in range(200):
        s = sentence(rng)
        plural = s[0] == "some"
        noun = 2 if s[1] in adjectives else 1
        assert (s[noun + 1] == "-s") == plural  # the noun agrees with its determiner
        main = max(j for j, w in enumerate(s) if w in verbs)
        assert (s[main + 1] == "-s") == (not plural) and s[-1] == "."  # the verb with its subject
        bad = break_agreement(s)
        assert (bad[main + 1] == "-s") == plural and break_agreement(bad) == s
    d = build_data(DataConfig(source="grammar", n=400), seed=0)
    d2 = build_data(DataConfig(source="grammar", n=400), seed=0)
    assert d.info.task == "mlm" and d.info.mask_prob == 0.15 and d.info.pad_id == PAD
    assert torch.equal(d.source.x, d2.source.x) and torch.equal(d.source.y, d2.source.y)
    learned = d.source.y != IGNORE
    words = (d.source.x >= NUM_SPECIAL) | learned
    assert 0.11 < learned.sum() / words.sum() < 0.19
    cls = build_data(DataConfig(source="grammar", n=400), seed=0, task="classify")
    assert cls.info.task == "classify" and cls.info.num_classes == 2 and cls.info.class_names == ["ok", "bad"]
    lm = build_data(DataConfig(source="grammar", n=400), seed=0, task="lm")
    x, y = lm.source.x, lm.source.y
    real = x[:, 1:] != PAD  # y is x shifted left by one
    assert lm.info.task == "lm" and torch.equal(x[:, 1:][real], y[:, :-1][real])


@pytest.mark.parametrize("fmt", ["txt", "jsonl"])
@pytest.mark.parametrize("task", ["lm", "mlm"])
def test_text_source_reads_files(fmt: str, task: str, tmp_path) -> None:
    lines = [f"line {i}: the cat sat on the mat number {i}" for i in range(60)]
    p = tmp_path / f"corpus.{fmt}"
    p.write_text("\n".join(json.dumps({"text": t}) if fmt == "jsonl" else t for t in lines) + "\n")
    d = build_data(DataConfig(source="text", path=str(p), tokenizer="bpe", vocab_size=300, max_len=16),
                   seed=0, task=task)
    assert d.info.task == task and d.source.x.shape[1] == 16 and d.info.tokenizer == "tokenizer.json"
    if task == "lm":  # packed windows: the next window starts where the last one's targets end
        x, y = d.source.x, d.source.y
        assert torch.equal(x[1:-1, 0], y[:-2, -1]) and (y[:-1] != IGNORE).all()
    with pytest.raises(LiandanError, match="not found"):
        build_data(DataConfig(source="text", path=str(tmp_path / "nope.txt")))


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_transformers_tokenizer_matches(kind: str, tmp_path) -> None:
    from transformers import AutoTokenizer

    tok = fit_tokenizer(kind, CORPUS * 5, vocab_size=300)
    tok.to_hf().save_pretrained(str(tmp_path))
    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    for text in CORPUS:
        assert hf.encode(text, add_special_tokens=False) == tok.encode(text)
        assert hf.decode(tok.encode(text)) == tok.decode(tok.encode(text))
    assert hf.pad_token_id == PAD and hf.eos_token_id == EOS and hf.mask_token_id == MASK
