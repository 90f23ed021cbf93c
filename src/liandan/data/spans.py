"""``token_classify`` and ``extractive_qa`` rows of a records source, tokenized with the model's
(fast) tokenizer.

**token_classify** (named-entity recognition): ``tokens`` (a list of words) and ``tags`` (one per
word: ``B-PER``, ``I-PER``, ``O``, ... as strings, or integers whose names the records carry as a
``datasets`` ``ClassLabel`` feature, as CoNLL-2003 on the hub does). The words are tokenized as
they are split (``is_split_into_words``); a word's tag goes on its first sub-token and every
other position (further sub-tokens, special tokens, padding) gets -100, what Hugging Face's
token-classification examples do (``label_all_tokens=False``). So ``y`` ``(N, T)`` holds one tag
per word, in order, and the entity metrics read words, not sub-tokens. The tags are those of the
training records (a ClassLabel's order, else sorted); one a val/test record shows that training
never does is refused: the head could not have learned it.

**extractive_qa** (SQuAD, Rajpurkar et al. 2016): ``context``, ``question`` and ``answers``
(``{text: [...], answer_start: [...]}`` as SQuAD, several gold answers allowed) or a flat
``answer`` (with ``answer_start``, else its first occurrence in the context). Question and
context are tokenized as a pair with character offsets; the first answer's characters give the
start and end token positions. A record longer than the context is refused, or with
``data.truncate`` its context is cut (never the question), and a record whose answer was cut off
is dropped, counted in the start-up line. No stride: a long context is not split into windows.

SQuAD's metrics compare *text*: the predicted span is cut from the context through the offsets
and scored against every gold answer. Text does not travel in tensors, so the source keeps it in
a :class:`QATable`, registered under an id derived from its content, and each row's ``y`` is
``(start, end, table id, row)``: the task finds the text of any batch, in any split, shuffled or
not, and a process that rebuilds the same records (``liandan evaluate``) gets the same id.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from liandan.data.base import TOKENS, Source
from liandan.data.records import SPLITS, Records, fixed_splits, rows_for, too_long
from liandan.data.text import IGNORE
from liandan.errors import LiandanError


def _fast(tok: Any, task: str) -> None:
    if not getattr(tok, "is_fast", False):
        raise LiandanError(f"{task} needs a fast tokenizer (tokenizer.json, the tokenizers library) for its word and "
                           f"character alignment; {tok.name_or_path} has a slow one")


def _no_packing(packing: bool, task: str) -> None:
    if packing:
        raise LiandanError(f"data.packing: packing serves sft (several examples per row); {task} keeps one record "
                           "per row")


def pad(rows: list[list[int]], value: int) -> torch.Tensor:
    """Rows of different lengths as ``(N, T)`` int64, right-padded with ``value``."""
    out = torch.full((len(rows), max(len(r) for r in rows)), value, dtype=torch.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.as_tensor(r, dtype=torch.int64)
    return out


# --- token_classify -----------------------------------------------------------------------------------


TAG = re.compile(r"O|[BIES]-.+")  # BIO (IOB2) and IOBES tags


def is_tag(tag: str) -> bool:
    """Whether ``tag`` is ``O`` or ``B-/I-/E-/S-`` followed by a type name."""
    return TAG.fullmatch(tag) is not None


def words_and_tags(rec: Records, split: str) -> tuple[list[list[str]], list[list[Any]]]:
    """The split's word lists and tag lists, checked record by record."""
    words, tags = rec.column(split, "tokens"), rec.column(split, "tags")
    where = rec.where[split]
    for i, (w, t) in enumerate(zip(words, tags, strict=True)):
        if not (isinstance(w, list) and all(isinstance(s, str) for s in w)):
            raise LiandanError(f"{where}: record {i}: {rec.name('tokens')!r} must be a list of words (strings)")
        if not isinstance(t, list):
            raise LiandanError(f"{where}: record {i}: {rec.name('tags')!r} must be a list of tags")
        if not w:
            raise LiandanError(f"{where}: record {i} has no tokens")
        if len(w) != len(t):
            raise LiandanError(f"{where}: record {i} has {len(w)} tokens but {len(t)} tags; each word needs one tag")
    return words, tags


def _class_label_names(rec: Records) -> list[str] | None:
    """The tag names a ``datasets`` ClassLabel feature of the tags field carries (None: plain values)."""
    import datasets

    feat = rec.splits["train"].features.get(rec.name("tags"))
    inner = getattr(feat, "feature", None)
    return list(inner.names) if isinstance(inner, datasets.ClassLabel) else None


def tag_ids(rec: Records, raw: dict[str, list[list[Any]]]) -> tuple[list[str], dict[str, list[list[int]]]]:
    """The tag names and each split's tags as ids. Integers are read through a ClassLabel's names."""
    label_names = _class_label_names(rec)
    named: dict[str, list[list[str]]] = {}
    for s, rows in raw.items():
        out = []
        for i, row in enumerate(rows):
            if all(isinstance(t, int) and not isinstance(t, bool) for t in row):
                if label_names is None:
                    raise LiandanError(f"{rec.where[s]}: record {i} has integer tags but the records carry no names "
                                       "for them; write the tags as strings (B-PER, I-PER, O) or save the records "
                                       "with a datasets ClassLabel feature")
                bad = [t for t in row if not 0 <= t < len(label_names)]
                if bad:
                    raise LiandanError(f"{rec.where[s]}: record {i} has tag {bad[0]}, outside its ClassLabel's "
                                       f"{len(label_names)} names")
                row = [label_names[t] for t in row]
            elif not all(isinstance(t, str) for t in row):
                raise LiandanError(f"{rec.where[s]}: record {i}: tags must be all strings or all integers")
            wrong = [t for t in row if not is_tag(t)]
            if wrong:
                raise LiandanError(f"{rec.where[s]}: record {i} has tag {wrong[0]!r}, not a BIO tag (O, B-TYPE, "
                                   "I-TYPE; E-TYPE and S-TYPE for IOBES)")
            out.append(row)
        named[s] = out
    seen = {t for row in named["train"] for t in row}
    names = label_names or sorted(seen)  # a ClassLabel's ids stay its own (a checkpoint's head agrees)
    index = {n: k for k, n in enumerate(names)}
    for s, rows in named.items():
        for i, row in enumerate(rows):
            unseen = [t for t in row if t not in seen]
            if unseen:
                raise LiandanError(f"{rec.where[s]}: record {i} has tag {unseen[0]!r}, which the training records "
                                   f"never show (their tags: {', '.join(sorted(seen)[:12])}"
                                   f"{', …' if len(seen) > 12 else ''})")
    if len(seen) < 2:
        raise LiandanError(f"{rec.where['train']}: every word is tagged {next(iter(seen))!r}; tagging needs two or "
                           "more tags")
    return names, {s: [[index[t] for t in row] for row in rows] for s, rows in named.items()}


def label_first_subtokens(word_ids: list[int | None], tags: list[int]) -> list[int]:
    """Per token: the word's tag on its first sub-token, -100 on the rest and on special tokens."""
    out, prev = [], None
    for w in word_ids:
        out.append(IGNORE if w is None or w == prev else tags[w])
        prev = w
    return out


@rows_for("token_classify")
def token_rows(rec: Records, tok: Any, *, context: int | None, truncate: bool, packing: bool,
               pack_length: int | None) -> Source:
    _no_packing(packing, "token_classify")
    _fast(tok, "token_classify")
    present = [s for s in SPLITS if rec.splits.get(s) is not None]
    raw = {s: words_and_tags(rec, s) for s in present}
    names, ids = tag_ids(rec, {s: raw[s][1] for s in present})
    xs, ys, notes, lost = [], [], [], 0
    for s in present:
        words = raw[s][0]
        enc = tok(words, is_split_into_words=True, add_special_tokens=True, truncation=False)
        notes += too_long([len(e) for e in enc["input_ids"]], context, truncate, rec.where[s])
        if context is not None and any(len(e) > context for e in enc["input_ids"]):  # [SEP] stays last
            enc = tok(words, is_split_into_words=True, add_special_tokens=True, truncation=True, max_length=context)
        for i, tags in enumerate(ids[s]):
            labels = label_first_subtokens(enc.word_ids(i), tags)
            lost += len(tags) - sum(v != IGNORE for v in labels)  # cut off, or no token at all (a bare accent)
            xs.append(enc["input_ids"][i])
            ys.append(labels)
    if lost:
        notes.append(f"{lost} word{'s' if lost > 1 else ''} with no token left to tag (not scored)")
    x, y = pad(xs, int(tok.pad_token_id)), pad(ys, IGNORE)
    counts = {s: len(ids[s]) for s in present}
    return Source(y=y, task="token_classify", targets=TOKENS, x=x, num_classes=len(names), class_names=names,
                  fixed_splits=fixed_splits(counts),
                  facts={"vocab_size": len(tok), "max_len": x.shape[1], "pad_id": int(tok.pad_token_id),
                         "num_classes": len(names), "notes": notes})


# --- extractive_qa ------------------------------------------------------------------------------------


@dataclass
class QATable:
    """The text behind question-answering rows: per row its question, context, gold answers, the
    first and last context token ``ctx`` ``(N, 2)``, and the character span of each context token."""

    questions: list[str]
    contexts: list[str]
    answers: list[list[str]]
    ctx: torch.Tensor  # (N, 2) int64: first and last token of the context
    offsets: list[np.ndarray]  # per row (c1 - c0 + 1, 2): characters [a, b) of each context token

    def span_text(self, row: int, start: int, end: int) -> str:
        """The context's characters from token ``start`` to token ``end`` (inclusive)."""
        c0 = int(self.ctx[row, 0])
        return self.contexts[row][int(self.offsets[row][start - c0, 0]): int(self.offsets[row][end - c0, 1])]


TABLES: OrderedDict[int, QATable] = OrderedDict()  # table id -> table; the few most recent in this process
KEEP = 8


def register_table(table: QATable) -> int:
    """Keep ``table`` under an id derived from its content (the same records: the same id)."""
    h = hashlib.sha1()
    for row in zip(table.questions, table.contexts, table.answers, strict=True):
        h.update(repr(row).encode())
    h.update(table.ctx.numpy().tobytes())
    for o in table.offsets:
        h.update(o.tobytes())
    key = int(h.hexdigest()[:13], 16)  # < 2**52: exact in int64 and float64
    TABLES[key] = table
    TABLES.move_to_end(key)
    while len(TABLES) > KEEP:
        TABLES.popitem(last=False)
    return key


def qa_table(key: int) -> QATable:
    """The table of ``key`` (a column of the rows' ``y``)."""
    try:
        return TABLES[int(key)]
    except KeyError:
        raise LiandanError("extractive_qa: the records behind these rows are not loaded in this process; build "
                           "the data from the run's recipe (run.load_data()) before scoring answers") from None


def answers(rec: Records, split: str, contexts: list[str]) -> list[list[tuple[str, int]]]:
    """Each record's gold answers as ``(text, start character)``, checked against its context."""
    where = rec.where[split]
    out = []
    if rec.name("answers") in rec.splits[split].column_names:  # each file in its own format
        for i, a in enumerate(rec.column(split, "answers")):
            texts = a.get("text") if isinstance(a, dict) else None
            starts = a.get("answer_start") if isinstance(a, dict) else None
            if not (isinstance(texts, list) and isinstance(starts, list) and texts and len(texts) == len(starts)):
                raise LiandanError(f"{where}: record {i}: {rec.name('answers')!r} must be {{text: [...], "
                                   "answer_start: [...]} with one start per answer (SQuAD's format)")
            out.append(list(zip(texts, starts, strict=True)))
    else:
        texts = rec.strings(split, "answer")
        has_start = rec.name("answer_start") in rec.splits[split].column_names
        starts = rec.column(split, "answer_start") if has_start else [None] * len(texts)
        out = [[(t, contexts[i].find(t) if s is None else s)] for i, (t, s) in enumerate(zip(texts, starts,
                                                                                          strict=True))]
    for i, golds in enumerate(out):
        for text, start in golds:
            if not (isinstance(text, str) and text.strip()):
                raise LiandanError(f"{where}: record {i} has an empty answer")
            if not isinstance(start, int) or contexts[i][start: start + len(text)] != text:
                at = "is not in its context" if start == -1 else f"is not at character {start} of its context"
                raise LiandanError(f"{where}: record {i}: answer {text[:40]!r} {at}")
    return out


def answer_tokens(offsets: list[tuple[int, int]], seq: list[int | None], a: int, b: int) -> tuple[int, int] | None:
    """Start and end token of characters ``[a, b)`` among the context's tokens (``seq`` == 1); None
    when the context's tokens stop before ``b`` (cut off by truncation)."""
    ctx = [k for k, s in enumerate(seq) if s == 1]
    if not ctx or offsets[ctx[-1]][1] < b:
        return None
    start = next((k for k in ctx if offsets[k][1] > a), None)  # the first token ending after the answer starts
    end = next((k for k in reversed(ctx) if offsets[k][0] < b), None)  # the last one starting before it ends
    if start is None or end is None or end < start:
        return None
    return start, end


@rows_for("extractive_qa")
def qa_rows(rec: Records, tok: Any, *, context: int | None, truncate: bool, packing: bool,
            pack_length: int | None) -> Source:
    _no_packing(packing, "extractive_qa")
    _fast(tok, "extractive_qa")
    present = [s for s in SPLITS if rec.splits.get(s) is not None]
    ids, types, spans, notes, counts = [], [], [], [], {}
    questions, contexts, golds, ctx, offsets = [], [], [], [], []
    for s in present:
        qs, cs = rec.strings(s, "question"), rec.strings(s, "context")
        gold = answers(rec, s, cs)
        enc = tok(qs, cs, add_special_tokens=True, truncation=False)
        notes += too_long([len(e) for e in enc["input_ids"]], context, truncate, rec.where[s])
        cut = context is not None and any(len(e) > context for e in enc["input_ids"])
        try:
            enc = tok(qs, cs, add_special_tokens=True, truncation="only_second" if cut else False,
                      max_length=context if cut else None, return_offsets_mapping=True)
        except Exception as e:  # noqa: BLE001 (the tokenizers' error when a question alone is too long)
            raise LiandanError(f"{rec.where[s]}: a question leaves no room for its context in {context} tokens: "
                               f"{str(e).strip().splitlines()[0][:120]}") from None
        kept, dropped = 0, 0
        for i in range(len(qs)):
            text, a = gold[i][0]  # trained on the first answer; every answer is a gold one for the metrics
            seq, off = enc.sequence_ids(i), enc["offset_mapping"][i]
            found = answer_tokens(off, seq, a, a + len(text))
            if found is None:
                if not cut:
                    raise LiandanError(f"{rec.where[s]}: record {i}: answer {text[:40]!r} covers no token of "
                                       "its context")
                dropped += 1
                continue
            c = [k for k, q in enumerate(seq) if q == 1]
            ids.append(enc["input_ids"][i])
            types.append(enc["token_type_ids"][i] if "token_type_ids" in enc else None)
            spans.append(found)
            questions.append(qs[i])
            contexts.append(cs[i])
            golds.append([t for t, _ in gold[i]])
            ctx.append((c[0], c[-1]))
            offsets.append(np.asarray(off[c[0]: c[-1] + 1], dtype=np.int64).reshape(-1, 2))
            kept += 1
        if dropped:
            notes.append(f"{dropped} {s} record{'s' if dropped > 1 else ''} dropped: the answer was cut off "
                         "(data.truncate)")
        if kept == 0:
            raise LiandanError(f"{rec.where[s]}: no record keeps its answer within {context} tokens")
        counts[s] = kept
    table = QATable(questions, contexts, golds, torch.tensor(ctx, dtype=torch.int64), offsets)
    key = register_table(table)
    x = pad(ids, int(tok.pad_token_id))  # (N, T)
    if types[0] is not None:  # BERT-style segments (question 0, context 1): rows (N, 2, T)
        x = torch.stack([x, pad(types, 0)], 1)
    y = torch.tensor([[a, b, key, r] for r, (a, b) in enumerate(spans)], dtype=torch.int64)  # (N, 4)
    return Source(y=y, task="extractive_qa", targets=TOKENS, x=x, fixed_splits=fixed_splits(counts),
                  facts={"vocab_size": len(tok), "max_len": x.shape[-1], "pad_id": int(tok.pad_token_id),
                         "notes": notes})
