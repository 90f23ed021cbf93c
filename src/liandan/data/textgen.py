"""Generated token data: arithmetic problems (``arith``) and a toy language (``grammar``).

``arith`` writes problems as characters, ``<bos>12+34=46<eos>``, optionally with the working
shown first (``12+34=2+4=6,1+3=4|46``: scratchpad / chain-of-thought, Nye et al. 2021, Wei et
al. 2022), optionally with the answer's digits reversed (least significant first, the order in
which carries are produced: Lee et al. 2023, "Teaching arithmetic to small transformers").
Problems are drawn without replacement while the problem space allows, so the test split holds
problems the model never saw.

``grammar`` is a small probabilistic context-free grammar with subject-verb number agreement
(``-s`` on singular verbs, on plural nouns), determiners that agree in number, selectional
restrictions (``eat`` takes food, ``read`` a text) and noun-specific adjectives and verbs. Most
tokens are therefore determined by the rest of the sentence, which is what masked language
modelling can learn: the Bayes-optimal single-mask accuracy is about 0.95.
"""

from __future__ import annotations

import numpy as np
import torch

from liandan.data.base import Source
from liandan.data.text import LABELLED, token_source
from liandan.data.tokenize import BOS, EOS, VocabTokenizer
from liandan.errors import LiandanError
from liandan.registry import register_data

ARITH_SYMBOLS = "0123456789+-*=,|"


def working(a: int, b: int, op: str) -> str:
    """The column-by-column working of ``a op b`` (least significant column first)."""
    da, db = str(a)[::-1], str(b)[::-1]
    steps = []
    if op == "+":
        carry = 0
        for i in range(max(len(da), len(db))):
            x, y = int(da[i]) if i < len(da) else 0, int(db[i]) if i < len(db) else 0
            s = x + y + carry
            steps.append(f"{x}+{y}" + (f"+{carry}" if carry else "") + f"={s}")
            carry = s // 10
    elif op == "-":
        if a < b:  # a - b = -(b - a): work the positive difference
            return working(b, a, "-")
        borrow = 0
        for i in range(len(da)):
            x, y = int(da[i]) - borrow, int(db[i]) if i < len(db) else 0
            borrow = int(x < y)
            steps.append(f"{x + 10 * borrow}-{y}={x + 10 * borrow - y}")
    else:  # partial products, one per digit of b
        for i, d in enumerate(db):
            steps.append(f"{a}*{int(d) * 10**i}={a * int(d) * 10**i}")
    return ",".join(steps)


def problem(a: int, b: int, op: str, steps: bool, reverse: bool) -> tuple[str, str]:
    """(prompt, answer) text, e.g. ``("12+34=", "46")``."""
    value = a + b if op == "+" else a - b if op == "-" else a * b
    ans = str(abs(value))[::-1] if reverse else str(abs(value))
    ans = ("-" if value < 0 else "") + ans
    return f"{a}{op}{b}=", (f"{working(a, b, op)}|" if steps else "") + ans


@register_data("arith", tags=("text", "synthetic"))
def arith(
    n: int = 5000,
    digits: int = 2,
    operators: str = "+",
    steps: bool = False,
    reverse: bool = False,
    answer_only: bool = True,
    seed: int = 0,
) -> Source:
    """Arithmetic problems as characters (``12+34=46``) for next-token prediction (task lm).

    Operands have 1..``digits`` digits; ``operators`` is any of ``+-*``. ``steps`` writes the
    column working before ``|answer`` (chain of thought); ``reverse`` writes the answer's
    digits least significant first; ``answer_only`` learns only the tokens after the first
    ``=`` (the prompt is context). Exact match of the greedy answer is the lm task's
    ``exact_match`` metric and ``liandan generate RUN --exact-match``.

    Args:
        n: number of distinct problems (at most all that exist for these digits and operators)
        digits: longest operand, in digits (1..9)
        operators: operators to draw from: any of + - * written together, e.g. '+-'
        steps: write the column working before '|answer' (chain of thought)
        reverse: write the answer's digits least significant first (the order a carry is computed)
        answer_only: learn only the tokens after the first '=' (the prompt is context); false: every token
        seed: random seed of the generated data (the same seed gives the same samples)
    """
    if not operators or set(operators) - set("+-*"):
        raise LiandanError(f"data.operators: use some of '+-*', got {operators!r}")
    if not 1 <= digits <= 9 or n < 3:
        raise LiandanError("data.arith: digits must be in 1..9 and n ≥ 3")
    rng = np.random.default_rng(seed)
    top, ops = 10**digits, sorted(set(operators), key=operators.index)
    space = top * top * len(ops)
    if n <= space:  # distinct problems: the held-out split is really held out
        codes = rng.choice(space, size=n, replace=False)
    else:
        raise LiandanError(f"data.n={n} exceeds the {space} distinct {digits}-digit problems")
    op_i, rest = np.divmod(codes, top * top)
    a, b = np.divmod(rest, top)
    tok = VocabTokenizer("char", ARITH_SYMBOLS)
    seqs, starts = [], []
    for ai, bi, oi in zip(a.tolist(), b.tolist(), op_i.tolist(), strict=True):
        prompt, answer = problem(ai, bi, ops[oi], steps, reverse)
        seqs.append([BOS, *tok.encode(prompt), *tok.encode(answer), EOS])
        starts.append(1 + len(prompt) if answer_only else 1)
    length = max(len(s) for s in seqs) - 1
    # with the working shown, exact match judges the final answer after "|" (the working may differ)
    return token_source(seqs, tok, "lm", length, seed, starts=starts, answer_after="=", reverse=reverse,
                        **({"final_after": "|"} if steps else {}))


# --- the toy language -------------------------------------------------------------------------

# noun -> (class, its adjective, its intransitive verb): each pair predicts the other
LEXICON = {
    "dog": ("animal", "loyal", "bark"), "cat": ("animal", "lazy", "purr"), "horse": ("animal", "fast", "gallop"),
    "boy": ("person", "young", "play"), "girl": ("person", "clever", "sing"), "teacher": ("person", "wise", "teach"),
    "apple": ("food", "red", None), "bread": ("food", "fresh", None), "cake": ("food", "sweet", None),
    "book": ("text", "long", None), "letter": ("text", "short", None), "poem": ("text", "old", None),
}
# transitive verbs by subject class, with the class of object they select
TRANSITIVE = {"animal": {"chase": "animal", "eat": "food"},
              "person": {"read": "text", "write": "text", "eat": "food", "see": "animal"}}
DETERMINER = {"sg": "a", "pl": "some"}


def _nouns(cls: str) -> list[str]:
    return [w for w, v in LEXICON.items() if v[0] == cls]


def _np(rng: np.random.Generator, noun: str, num: str) -> list[str]:
    """NP -> DET (ADJ) N (-s)"""
    out = [DETERMINER[num]]
    if rng.random() < 0.5:
        out.append(LEXICON[noun][1])
    return [*out, noun] + (["-s"] if num == "pl" else [])


def _vp(rng: np.random.Generator, noun: str, num: str) -> list[str]:
    """VP -> V_intr (-s) | V_tr (-s) NP_obj: the verb agrees with the subject's number."""
    agree = ["-s"] if num == "sg" else []
    if rng.random() < 0.4:
        return [LEXICON[noun][2], *agree]
    verbs = TRANSITIVE[LEXICON[noun][0]]
    v = str(rng.choice(list(verbs)))
    obj = str(rng.choice(_nouns(verbs[v])))
    return [v, *agree, *_np(rng, obj, str(rng.choice(["sg", "pl"])))]


def sentence(rng: np.random.Generator) -> list[str]:
    """S -> NP_subj (that VP) VP ."""
    noun = str(rng.choice(_nouns("animal") + _nouns("person")))
    num = str(rng.choice(["sg", "pl"]))
    s = _np(rng, noun, num)
    if rng.random() < 0.3:  # a relative clause about the same subject: agreement at a distance
        s += ["that", *_vp(rng, noun, num)]
    return [*s, *_vp(rng, noun, num), "."]


def break_agreement(words: list[str]) -> list[str]:
    """The same sentence with the main verb's number flipped (ungrammatical)."""
    out = list(words)
    verbs = {v for c in TRANSITIVE.values() for v in c} | {v[2] for v in LEXICON.values() if v[2]}
    i = max(j for j, w in enumerate(out) if w in verbs)  # the main verb is the last verb of the subject's VPs
    if i + 1 < len(out) and out[i + 1] == "-s":
        del out[i + 1]
    else:
        out.insert(i + 1, "-s")
    return out


@register_data("grammar", tags=("text", "synthetic"))
def grammar(n: int = 5000, task: str = "mlm", mask_prob: float = 0.15, dynamic_mask: bool = True,
            seed: int = 0) -> Source:
    """A toy language with number agreement (words as tokens): mlm, lm, or classify grammaticality.

    ``task: classify`` labels half the sentences ungrammatical (the main verb's agreement
    flipped; class names ``ok``/``bad``). ``dynamic_mask: false`` keeps the per-seed masking
    for training too (else the mlm task re-draws it every batch).

    Args:
        n: number of sentences
        task: mlm (masked words), lm (next word) or classify (grammatical or not: half the sentences get the
            main verb's agreement flipped)
        mask_prob: share of tokens masked for mlm (0.15 as in BERT)
        dynamic_mask: re-draw the mlm masks every training batch (as RoBERTa); false: keep the seeded masks
        seed: random seed of the generated data (the same seed gives the same samples)
    """
    if n < 3:
        raise LiandanError("data.n must be ≥ 3")
    rng = np.random.default_rng(seed)
    sents = [sentence(rng) for _ in range(n)]
    labels = None
    if task in LABELLED:
        bad = rng.random(n) < 0.5
        sents = [break_agreement(s) if b else s for s, b in zip(sents, bad, strict=True)]
        labels = torch.as_tensor(bad, dtype=torch.int64)
    vocab = {w for _, adj, verb in LEXICON.values() for w in (adj, verb) if w} | set(LEXICON)
    vocab |= set(DETERMINER.values())
    vocab |= {v for c in TRANSITIVE.values() for v in c} | {"-s", "that", "."}
    tok = VocabTokenizer("word", vocab)
    seqs = [[BOS, *tok.encode(" ".join(s)), EOS] for s in sents]
    length = max(len(s) for s in seqs)
    return token_source(seqs, tok, task, length, seed, mask_prob=mask_prob, dynamic=dynamic_mask,
                        labels=labels, class_names=["ok", "bad"])
