"""Users' records: JSONL, CSV and Parquet files and ``datasets.save_to_disk`` folders, read with
Hugging Face ``datasets`` and tokenized with the model's tokenizer (``data.tokenizer``, filled
from a pre-trained model's ``model.path``).

Each task reads its own schema (:data:`ROWS`, one builder per task; ``data.fields`` maps these
names to the file's own column names):

- ``text_classify``: ``text`` and ``label`` (strings or integers; ``text_pair`` too when present,
  for sentence pairs), one row of token ids per record.
- ``sft``: chat ``messages`` (``[{role, content}, ...]``) or ``prompt`` and ``response``,
  rendered with the tokenizer's chat template (``apply_chat_template``) and learned on the
  assistant's tokens only (:mod:`liandan.data.chat`).

Rows longer than the model's context (or ``data.max_len``) are refused, naming the first, or
with ``data.truncate: true`` cut, with a count in the run's start-up line.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from liandan.data.base import Source
from liandan.errors import LiandanError
from liandan.registry import register_data

FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
SPLIT_NAMES = {"train": ("train",), "val": ("validation", "val", "valid", "dev"), "test": ("test",)}
SPLITS = ("train", "val", "test")


class ModelTokenizer:
    """A model's ``transformers`` tokenizer with liandan's tokenizer surface: ``save`` writes its
    ``tokenizer.json`` into the run directory, ``to_hf`` gives it whole for ``RUN/hf/`` (with
    its chat template and special tokens)."""

    def __init__(self, hf: Any, path: str) -> None:
        self.hf, self.path = hf, path

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    @property
    def tok(self) -> Any:
        """The ``tokenizers`` object (what :class:`~liandan.data.tokenize.BPETokenizer` keeps as ``tok``)."""
        return self.hf.backend_tokenizer

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False)

    def decode(self, ids: Any) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=True)

    def to_hf(self) -> Any:
        return self.hf

    def save(self, path: str | Path) -> Path:
        from liandan.data.tokenize import _file

        path = _file(path)
        self.hf.backend_tokenizer.save(str(path))
        return path


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    import datasets

    was = datasets.utils.logging.is_progress_bar_enabled()
    datasets.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            datasets.utils.logging.enable_progress_bar()


def read_table(path: str, what: str) -> dict[str, Any]:
    """The records of ``path`` as ``{split: datasets.Dataset}``: a file is one split (``train``); a
    ``save_to_disk`` folder of a ``DatasetDict`` gives its splits (validation/val/dev → val)."""
    import datasets

    from liandan.paths import check_path, check_tree

    p = check_path(Path(path).expanduser(), what)
    if not p.exists():
        raise LiandanError(f"{what}: {p} not found")
    with _quiet_datasets():
        if p.is_dir():
            if not any((p / m).is_file() for m in ("dataset_dict.json", "state.json")):
                raise LiandanError(f"{what}: {p} is a folder but not a datasets save_to_disk folder (no "
                                   f"dataset_dict.json or state.json); give a {', '.join(FORMATS)} file")
            check_tree(p.rglob("*"), f"{what} entry")
            loaded = datasets.load_from_disk(str(p), keep_in_memory=True)
            if isinstance(loaded, datasets.DatasetDict):
                found = {ours: loaded[n] for ours, names in SPLIT_NAMES.items() for n in names if n in loaded}
                if "train" not in found:
                    raise LiandanError(f"{what}: {p} has splits {', '.join(loaded)} but no 'train'")
            else:
                found = {"train": loaded}
        else:
            fmt = FORMATS.get(p.suffix.lower())
            if fmt is None:
                raise LiandanError(f"{what}: {p}: unknown format {p.suffix!r}; records are {', '.join(FORMATS)} files "
                                   "or a datasets save_to_disk folder")
            if p.stat().st_size == 0:
                raise LiandanError(f"{what}: {p} is empty")
            with tempfile.TemporaryDirectory(prefix="liandan-records-") as cache:  # nothing left in ~/.cache
                try:
                    found = {"train": datasets.load_dataset(fmt, data_files=str(p), split="train", cache_dir=cache,
                                                            keep_in_memory=True)}
                except Exception as e:  # noqa: BLE001 (the parsers' many error types: one line)
                    cause = e.__cause__ or e
                    msg = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
                    raise LiandanError(f"{what}: {p} cannot be read as {fmt}: {msg[:160]}") from None
    for split, ds in found.items():
        if ds.num_rows == 0:
            raise LiandanError(f"{what}: {p}{'' if split == 'train' else f' ({split})'} holds no records")
    return found


class Records:
    """The splits of a records source and how their fields are named; what a row builder reads."""

    def __init__(self, splits: dict[str, Any], fields: dict[str, str], where: dict[str, str],
                 options: dict[str, Any] | None = None) -> None:
        self.splits, self.fields, self.where = splits, fields, where
        self.options = dict(options or {})  # a task's own data options (sft: train_on_prompt)

    def name(self, field: str) -> str:
        return self.fields.get(field, field)

    def has(self, field: str) -> bool:
        return self.name(field) in self.splits["train"].column_names

    def column(self, split: str, field: str) -> list[Any]:
        """Field ``field`` of every record of ``split``; a missing one is an error naming the fields present."""
        ds, col = self.splits[split], self.name(field)
        if col not in ds.column_names:
            mapped = f" ({field!r} mapped to {col!r} by data.fields)" if col != field else ""
            raise LiandanError(f"{self.where[split]}: no field {col!r}{mapped}; fields present: "
                               f"{', '.join(ds.column_names)} (map yours with data.fields: {{{field}: NAME}})")
        return list(ds[col])  # datasets 4+ hands a lazy Column

    def strings(self, split: str, field: str) -> list[str]:
        values = self.column(split, field)
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise LiandanError(f"{self.where[split]}: record {i}: field {self.name(field)!r} is "
                                   f"{'missing' if v is None else type(v).__name__}, not text")
        return values


RowBuilder = Callable[..., Source]
ROWS: dict[str, RowBuilder] = {}  # task -> the builder of its rows


def rows_for(task: str) -> Callable[[RowBuilder], RowBuilder]:
    """Register the builder of ``task``'s rows: ``(records, tokenizer, *, context, truncate, packing,
    pack_length) -> Source``."""
    def deco(fn: RowBuilder) -> RowBuilder:
        ROWS[task] = fn
        return fn

    return deco


def schema_task(rec: Records) -> str:
    """The task the training records' fields suggest (a recipe's ``task: auto``)."""
    if rec.has("messages") or rec.has("prompt") or rec.has("response"):  # a missing partner is named later
        return "sft"
    if rec.has("tokens") and rec.has("tags"):
        return "token_classify"
    if rec.has("context") and rec.has("question"):
        return "extractive_qa"
    if rec.has("text") or rec.has("label"):
        return "text_classify"
    raise LiandanError(f"{rec.where['train']}: fields {', '.join(rec.splits['train'].column_names)} match no schema: "
                       "text + label (text_classify), messages or prompt + response (sft), tokens + tags "
                       "(token_classify), context + question + answers (extractive_qa); name the task "
                       "(task: ...) and map the fields (data.fields: {text: NAME, ...})")


@register_data("records", tags=("text",), model_options=("tokenizer",))  # data.tokenizer: the model's
def records(
    path: str,
    tokenizer: str | None = None,
    val: str | None = None,
    test: str | None = None,
    fields: dict[str, str] | None = None,
    max_len: int | None = None,
    truncate: bool = False,
    packing: bool = False,
    task: str | None = None,
    train_on_prompt: bool = False,
    chat_template: str | None = None,
) -> Source:
    """Your own records (JSONL, CSV, Parquet, datasets save_to_disk) tokenized with the model's tokenizer.

    Schemas: text + label (text_classify; labels as strings or integers), chat messages or prompt +
    response (sft: chat template applied, loss on the responses only).

    Args:
        path: a .jsonl, .csv or .parquet file, or a datasets save_to_disk folder (its validation/test splits
            are used as val/test)
        tokenizer: a save_pretrained directory or cached hub id whose tokenizer encodes the text; filled from
            model.path for model hf
        val: a file of validation records (else carved from path by data.split)
        test: a file of test records (else carved from path by data.split)
        fields: your column names for the schema's fields, e.g. {text: sentence, label: intent}
        max_len: the most tokens a record may have (at most the model's context; rows are as long as the longest
            record), and the length of packed rows; None: the model's context
        truncate: cut records longer than max_len / the model's context (counted in the start-up line);
            false: refuse them, naming the first
        packing: sft: several examples per row of max_len tokens, attention never crossing an example
            boundary (position ids restart per example); the training records only when val/test are given
        task: text_classify, sft, token_classify or extractive_qa; inferred from the recipe's task, else
            from the fields present
        train_on_prompt: sft: learn the prompt tokens too, not only the responses (LLaMA-Factory's option), in
            every split
        chat_template: sft: a Jinja chat template (the text, or a file holding it) replacing the tokenizer's, for a
            tokenizer without one; RUN/hf/ keeps it
    """
    from liandan.models.hf_pretrained import context_length, load_tokenizer

    if tokenizer is None:
        raise LiandanError("data.tokenizer: records are tokenized with a model's tokenizer: use model: {name: hf, "
                           "path: ...} (its tokenizer is used) or set data.tokenizer to a save_pretrained directory")
    if max_len is not None and max_len < 2:
        raise LiandanError("data.max_len must be ≥ 2")
    splits = {"train": None}
    where = {"train": f"data.path ({path})"}
    found = read_table(path, "data.path")
    for split, ds in found.items():
        splits[split], where[split] = ds, f"data.path ({path}, {split})" if split != "train" else where["train"]
    for split, file in (("val", val), ("test", test)):
        if file is not None:
            splits[split], where[split] = read_table(file, f"data.{split}")["train"], f"data.{split} ({file})"
    rec = Records(splits, dict(fields or {}), where, {"train_on_prompt": train_on_prompt})
    build = ROWS.get(task or schema_task(rec))
    if build is None:
        raise LiandanError(f"data records serves tasks {', '.join(sorted(ROWS))}, not {task!r}")
    if (train_on_prompt or chat_template is not None) and build is not ROWS["sft"]:
        raise LiandanError("data.train_on_prompt and data.chat_template serve sft records (prompt + response or "
                           "messages)")
    tok = load_tokenizer(tokenizer)
    if chat_template is not None:
        from liandan.data.chat import with_template

        tok = with_template(tok, chat_template)
    model_ctx = context_length(tokenizer)
    context = min(c for c in (max_len, model_ctx) if c is not None) if (max_len or model_ctx) else None
    src = build(rec, tok, context=context, truncate=truncate, packing=packing, pack_length=max_len)
    src.tokenizer = ModelTokenizer(tok, tokenizer)
    return src


def fixed_splits(counts: dict[str, int]) -> dict[str, Any] | None:
    """Row indices of the splits stacked in the order train, val, test; None with one split only."""
    import numpy as np

    if len(counts) == 1:
        return None
    out, start = {}, 0
    for split in SPLITS:
        if split in counts:
            out[split] = np.arange(start, start + counts[split])
            start += counts[split]
    return out


def too_long(lengths: list[int], context: int | None, truncate: bool, where: str, unit: str = "tokens") -> list[str]:
    """Refuse rows longer than ``context`` (unless ``truncate``); the start-up notes for the cut ones."""
    if context is None:
        return []
    over = [i for i, n in enumerate(lengths) if n > context]
    if not over:
        return []
    if not truncate:
        i = over[0]
        raise LiandanError(f"{where}: record {i} has {lengths[i]} {unit}, more than the model's context of {context} "
                           f"(data.max_len or the model's); set data.truncate: true to cut the {len(over)} such "
                           f"record{'s' if len(over) > 1 else ''}")
    return [f"{len(over)} record{'s' if len(over) > 1 else ''} cut to {context} tokens (data.truncate)"]


from liandan.data import chat, labelled, spans  # noqa: E402,F401  (the row builders register on import)
