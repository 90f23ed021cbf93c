"""``text_classify`` rows of a records source: ``text`` (and ``text_pair`` when present) with a
``label``, tokenized with the model's tokenizer (its special tokens added, e.g. BERT's
``[CLS] … [SEP]``) and right-padded with its padding token to one length.

Labels are strings or integers. The classes are those of the training records (sorted; integers
numerically, so labels 0..K-1 keep their ids); a validation or test label the training records
never show is refused: the head has no output for it.
"""

from __future__ import annotations

from typing import Any

import torch

from liandan.data.base import CLASS, Source
from liandan.data.records import SPLITS, Records, fixed_splits, rows_for, too_long
from liandan.errors import LiandanError


def class_ids(rec: Records) -> tuple[list[str], dict[str, torch.Tensor]]:
    """The class names (from the training records) and each split's labels as ids."""
    raw = {s: rec.column(s, "label") for s in SPLITS if rec.splits.get(s) is not None}
    for s, labels in raw.items():
        for i, v in enumerate(labels):
            if v is None or (isinstance(v, str) and not v.strip()):
                raise LiandanError(f"{rec.where[s]}: record {i} has no label")
    numeric = all(isinstance(v, int) and not isinstance(v, bool) for v in raw["train"])
    key = (lambda v: int(v)) if numeric else (lambda v: str(v))  # noqa: E731
    classes = sorted({key(v) for v in raw["train"]})
    index = {c: i for i, c in enumerate(classes)}
    ids = {}
    for s, labels in raw.items():
        for i, v in enumerate(labels):
            try:
                k = key(v)
            except (TypeError, ValueError):
                k = None
            if k not in index:
                raise LiandanError(f"{rec.where[s]}: record {i} has label {v!r}, which the training records never "
                                   f"show (their labels: {', '.join(map(str, classes[:12]))}"
                                   f"{', …' if len(classes) > 12 else ''})")
        ids[s] = torch.tensor([index[key(v)] for v in labels], dtype=torch.int64)
    if len(classes) < 2:
        raise LiandanError(f"{rec.where['train']}: every record has label {classes[0]!r}; a classifier needs two "
                           "or more")
    return [str(c) for c in classes], ids


@rows_for("text_classify")
def classify_rows(rec: Records, tok: Any, *, context: int | None, truncate: bool, packing: bool,
                  pack_length: int | None) -> Source:
    if packing:
        raise LiandanError("data.packing: packing serves sft (several examples per row); text_classify keeps one "
                           "text per row")
    present = [s for s in SPLITS if rec.splits.get(s) is not None]
    pair = rec.has("text_pair")
    texts = {s: rec.strings(s, "text") for s in present}  # a missing text field first: it names the schema
    names, labels = class_ids(rec)
    ids, notes = [], []
    for s in present:
        pairs = rec.strings(s, "text_pair") if pair else None
        texts_s = texts[s]
        enc = tok(texts_s, pairs, add_special_tokens=True, truncation=False)["input_ids"]
        notes += too_long([len(e) for e in enc], context, truncate, rec.where[s])
        if context is not None and any(len(e) > context for e in enc):  # cut by the tokenizer: [SEP] stays last
            enc = tok(texts_s, pairs, add_special_tokens=True, truncation=True, max_length=context)["input_ids"]
        ids += enc
    length = max(len(e) for e in ids)  # the longest record (already within the context)
    x = torch.full((len(ids), length), int(tok.pad_token_id), dtype=torch.int64)
    for i, e in enumerate(ids):
        x[i, : len(e)] = torch.as_tensor(e[:length], dtype=torch.int64)
    counts = {s: len(labels[s]) for s in SPLITS if s in labels}
    y = torch.cat([labels[s] for s in SPLITS if s in labels])
    return Source(y=y, task="text_classify", targets=CLASS, x=x, num_classes=len(names), class_names=names,
                  fixed_splits=fixed_splits(counts),
                  facts={"vocab_size": len(tok), "max_len": length, "pad_id": int(tok.pad_token_id),
                         "notes": notes})
