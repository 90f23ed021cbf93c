"""Entity metrics against ``seqeval`` (CoNLL's chunking), and SQuAD v1.1's exact match and F1 on
cases worked out by hand from the official evaluation script's definitions."""

from __future__ import annotations

import random

import pytest

from liandan.training import span_metrics as sm

TYPES = ("PER", "LOC", "ORG")


def random_tags(rng: random.Random, n: int, scheme: str) -> list[str]:
    """Tags of any order, ill-formed ones included (I- after O, a type change inside a chunk, E- alone)."""
    prefixes = "BIO" if scheme == "bio" else "BIOES"
    return [p if (p := rng.choice(prefixes)) == "O" else f"{p}-{rng.choice(TYPES)}" for _ in range(n)]


@pytest.mark.parametrize("scheme", ["bio", "iobes"])
def test_entities_and_scores_equal_seqevals(scheme: str) -> None:
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import get_entities

    rng = random.Random(0)
    gold = [random_tags(rng, rng.randint(1, 12), scheme) for _ in range(300)]
    # predictions: the gold tags with a third of them redrawn, so scores land away from 0 and 1
    pred = [[t if rng.random() > 0.33 else random_tags(rng, 1, scheme)[0] for t in g] for g in gold]
    for seq in gold + pred:
        assert sorted(sm.entities(seq)) == sorted(get_entities(seq))
    counts = [sum(c) for c in zip(*(sm.entity_counts(g, p) for g, p in zip(gold, pred, strict=True)), strict=True)]
    got = sm.prf(*counts)
    assert 0.2 < got["f1"] < 0.9  # a case that tells metrics apart
    assert got["precision"] == pytest.approx(precision_score(gold, pred), abs=1e-12)
    assert got["recall"] == pytest.approx(recall_score(gold, pred), abs=1e-12)
    assert got["f1"] == pytest.approx(f1_score(gold, pred), abs=1e-12)


def test_conll_chunking_by_hand() -> None:
    assert sm.entities(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]
    assert sm.entities(["I-PER", "I-PER"]) == [("PER", 0, 1)]  # an I- after O opens a chunk (conlleval)
    assert sm.entities(["B-PER", "I-LOC"]) == [("PER", 0, 0), ("LOC", 1, 1)]  # a type change closes one
    assert sm.entities(["B-PER", "B-PER"]) == [("PER", 0, 0), ("PER", 1, 1)]
    assert sm.entities(["S-LOC", "B-PER", "E-PER"]) == [("LOC", 0, 0), ("PER", 1, 2)]
    # a right type with a wrong boundary is no match: 1 gold, 1 predicted, 0 correct
    assert sm.entity_counts(["B-PER", "I-PER"], ["B-PER", "O"]) == (1, 1, 0)
    assert sm.prf(0, 0, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


@pytest.mark.parametrize(("text", "normal"), [
    ("The  Eiffel Tower!", "eiffel tower"),
    ("An apple, a day", "apple day"),
    ("the theater", "theater"),  # articles are whole words only
    ("U.S. $1,000", "us 1000"),  # punctuation is dropped, not turned into spaces
    ("  Denver\tBroncos\n", "denver broncos"),
    ("the", ""),
])
def test_normalize_answer(text: str, normal: str) -> None:
    assert sm.normalize_answer(text) == normal


@pytest.mark.parametrize(("pred", "gold", "em", "f1"), [
    ("the Eiffel Tower", "Eiffel Tower.", 1.0, 1.0),
    ("Eiffel Tower in Paris", "the Eiffel Tower", 0.0, 2 / 3),  # P = 2/4, R = 2/2
    ("x y y", "y y y", 0.0, 2 / 3),  # overlap counts as a multiset: min(2, 3) = 2 y's, P = R = 2/3
    ("Broncos", "Denver Broncos", 0.0, 2 / 3),  # P = 1, R = 1/2
    ("Carolina Panthers", "Denver Broncos", 0.0, 0.0),
    ("", "Denver", 0.0, 0.0),
    ("the", "a", 1.0, 0.0),  # both normalise to "": equal, but no token in common (the script's F1 is 0)
])
def test_squad_exact_match_and_f1(pred: str, gold: str, em: float, f1: float) -> None:
    assert sm.exact_match(pred, gold) == em
    assert sm.f1(pred, gold) == pytest.approx(f1, abs=1e-12)


def test_best_over_gold_answers_takes_each_maximum() -> None:
    golds = ["Denver Broncos", "The Denver Broncos", "Broncos"]
    assert sm.best_over_golds("Denver Broncos", golds) == (1.0, 1.0)
    em, f1 = sm.best_over_golds("the Broncos team", ["Denver Broncos", "Broncos team of Denver"])
    assert em == 0.0 and f1 == pytest.approx(max(2 * 0.5 * 0.5 / 1.0, 2 * 1.0 * 0.5 / 1.5))  # 2/3
