"""Span metrics: entities of a tag sequence scored as CoNLL does, and answers scored as SQuAD does.

**Entities** (``token_classify``). A tag is ``O`` or ``PREFIX-TYPE`` with prefix ``B`` (begins),
``I`` (inside), ``E`` (ends) or ``S`` (single): BIO (IOB2) and IOBES both read. Chunks follow the
CoNLL-2000 shared task's ``conlleval`` script (Tjong Kim Sang & Buchholz 2000, the scorer of
CoNLL-2003 NER, Tjong Kim Sang & De Meulder 2003), which is also ``seqeval``'s default mode: an
``I-X`` after ``O`` or after another type opens a new chunk (lenient, not IOB2-strict), and a
change of type always closes one. An entity counts as found only when its type and both of its
ends match a gold one exactly; precision, recall and F1 are micro-averaged over every entity of
every sentence (``seqeval.metrics.f1_score`` with its defaults; compared in
``tests/training/test_span_tasks.py``).

**Answers** (``extractive_qa``). Exact match and F1 as the official SQuAD v1.1 evaluation script
(``evaluate-v1.1.py``) of Rajpurkar et al. 2016, "SQuAD: 100,000+ Questions for Machine
Comprehension of Text", define them: both strings are normalised (lower case, punctuation
removed, the articles *a*, *an*, *the* removed, whitespace collapsed); exact match is equality
of the normalised strings; F1 is the harmonic mean of precision and recall over the bag of
normalised whitespace tokens; each question takes the maximum over its gold answers. The
script reports percentages; liandan reports fractions in [0, 1] like its other metrics.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


# --- entities (CoNLL) ---------------------------------------------------------------------------------


def split_tag(tag: str) -> tuple[str, str]:
    """``(prefix, type)`` of a tag: ``B-PER`` -> ``("B", "PER")``, ``O`` -> ``("O", "")``."""
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def _ends(prev: str, prev_type: str, tag: str, kind: str) -> bool:
    """conlleval's ``endOfChunk``: the chunk open before this tag closes here."""
    if prev in ("E", "S"):
        return True
    if prev in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev != "O" and prev_type != kind


def _starts(prev: str, prev_type: str, tag: str, kind: str) -> bool:
    """conlleval's ``startOfChunk``: a chunk opens at this tag."""
    if tag in ("B", "S"):
        return True
    if prev in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag != "O" and prev_type != kind


def entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The chunks of one sentence's tags as ``(type, first, last)`` word positions (inclusive)."""
    out: list[tuple[str, int, int]] = []
    prev, prev_type, begin = "O", "", 0
    for i, tag in enumerate([*tags, "O"]):  # a final O closes the last chunk
        p, kind = split_tag(tag)
        if _ends(prev, prev_type, p, kind):
            out.append((prev_type, begin, i - 1))
        if _starts(prev, prev_type, p, kind):
            begin = i
        prev, prev_type = p, kind
    return out


def entity_counts(gold: Sequence[str], pred: Sequence[str]) -> tuple[int, int, int]:
    """``(gold entities, predicted entities, correct)`` of one sentence (tags aligned word by word)."""
    g, p = set(entities(gold)), set(entities(pred))
    return len(g), len(p), len(g & p)


def prf(n_gold: int, n_pred: int, n_correct: int) -> dict[str, float]:
    """Micro precision, recall and F1 from entity counts (0 where undefined, as seqeval)."""
    precision = n_correct / n_pred if n_pred else 0.0
    recall = n_correct / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


# --- answers (SQuAD v1.1) -----------------------------------------------------------------------------


def normalize_answer(s: str) -> str:
    """SQuAD v1.1's ``normalize_answer``: lower case, no punctuation, no articles, single spaces."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal (SQuAD v1.1's ``exact_match_score``)."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    """Token F1 of the normalised strings (SQuAD v1.1's ``f1_score``): overlap counted as a multiset."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_over_golds(prediction: str, golds: Sequence[str]) -> tuple[float, float]:
    """``(exact match, F1)`` of one prediction: each the maximum over the gold answers."""
    return (max(exact_match(prediction, g) for g in golds), max(f1(prediction, g) for g in golds))
