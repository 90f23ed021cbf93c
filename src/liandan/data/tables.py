"""The CSV source: a header row, a target column, numeric and categorical feature columns.

Nothing is guessed silently: blank cells follow ``missing`` (error, naming the column and rows, or
drop), a text column is an error unless ``columns`` declares it categorical (one-hot encoded), and
what was inferred (task, classes, features, rows per split) is printed at the start of the run
(``DataInfo.describe``). Splits can come from the files themselves: ``val``/``test`` files beside
``path``, or a ``split_column`` with values train/val/test.
"""

from __future__ import annotations

import csv as _csv
from pathlib import Path
from typing import Literal

import numpy as np

from liandan.data.base import CLASS, VALUE, Source, classification, regression
from liandan.errors import LiandanError
from liandan.paths import check_path, open_checked
from liandan.registry import register_data

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def existing(path: str, what: str) -> Path:
    """``path`` as an existing absolute path; a missing one names where it was looked for."""
    p = Path(path).expanduser()
    check_path(p, f"{what} data")  # before anything about the path is told
    if not p.exists():
        raise LiandanError(f"{what}: path not found: {p} (looked for {p.absolute()})")
    return p


def is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _rows(p: Path, delimiter: str) -> tuple[list[str], list[list[str]]]:
    with open_checked(p, "r", "csv data", newline="") as f:
        rows = list(_csv.reader(f, delimiter=delimiter))
    if len(rows) < 2:
        raise LiandanError(f"csv {p}: needs a header row and at least one data row")
    header, body = [h.strip() for h in rows[0]], [[v.strip() for v in r] for r in rows[1:] if r]
    for r, row in enumerate(body):
        if len(row) != len(header):
            raise LiandanError(f"csv {p}: row {r + 2} has {len(row)} fields, header has {len(header)}")
    return header, body


def _rows_list(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:10])
    return shown + (f", ... ({len(rows)} rows)" if len(rows) > 10 else "")


@register_data("csv", tags=("tabular", "file"))
def csv(path: str, target: str = "label", task: str = "auto", delimiter: str = ",",
        missing: Literal["error", "drop"] = "error",
        columns: dict[str, Literal["numeric", "categorical"]] | None = None,
        val: str | None = None, test: str | None = None, split_column: str | None = None) -> Source:
    """A CSV file with a header row; ``target`` names the label column, the rest are features.

    Args:
        path: the CSV file: a header row, then one sample per row (the training rows when val/test are given)
        target: name of the label column
        task: classify, regress, or auto: classify when the target is non-numeric or at most 20 distinct
            integers, else regress
        delimiter: field separator, e.g. ';' or a tab
        missing: blank cells: error (names the column and rows) or drop (drops those rows, reported at the start)
        columns: feature column types, e.g. {colour: categorical}: categorical columns are one-hot encoded;
            undeclared columns must be numeric
        val: a CSV file with the same columns: the validation split (instead of a random one)
        test: a CSV file with the same columns: the test split
        split_column: a column whose values (train, val, test) assign each row's split; not a feature
    """
    p = existing(path, "csv")
    header, body = _rows(p, delimiter)
    part = [0] * len(body)
    origin = [(p, r + 2) for r in range(len(body))]
    for k, extra in ((1, val), (2, test)):
        if extra is None:
            continue
        q = existing(extra, "csv")
        h, b = _rows(q, delimiter)
        if h != header:
            raise LiandanError(f"csv {q}: columns {', '.join(h)} differ from {p}'s: {', '.join(header)}")
        body, part, origin = body + b, part + [k] * len(b), origin + [(q, r + 2) for r in range(len(b))]
    for col, what in ((target, "target"), (split_column, "split_column")):
        if col is not None and col not in header:
            raise LiandanError(f"csv {p}: no {what} column {col!r}; columns: {', '.join(header)}")
    for col in columns or {}:
        if col not in header or col in (target, split_column):
            raise LiandanError(f"csv {p}: data.columns names {col!r}, not a feature column; columns: "
                               f"{', '.join(header)}")
    if split_column is not None:
        si = header.index(split_column)
        for r, row in enumerate(body):
            if row[si].lower() not in SPLIT_NAMES:
                raise LiandanError(f"csv {origin[r][0]}: row {origin[r][1]}: split_column {split_column!r} value "
                                   f"{row[si]!r}; use train, val or test")
            part[r] = ("train", "val", "test").index(SPLIT_NAMES[row[si].lower()])
    feats = [h for h in header if h not in (target, split_column)]
    notes = []
    blank = {h: [r for r, row in enumerate(body) if not row[header.index(h)]] for h in [target, *feats]}
    blank = {h: rs for h, rs in blank.items() if rs}
    if blank and missing == "error":
        h, rs = next(iter(blank.items()))
        where = _rows_list([origin[r][1] for r in rs])
        raise LiandanError(f"csv {origin[rs[0]][0]}: column {h!r} has {len(rs)} blank cells (rows {where}); "
                           "set data.missing: drop to drop those rows, or fill them in")
    if blank:
        drop = sorted({r for rs in blank.values() for r in rs})
        keep = [r for r in range(len(body)) if r not in set(drop)]
        body, part = [body[r] for r in keep], [part[r] for r in keep]
        notes.append(f"dropped {len(drop)} rows with blank cells ({', '.join(blank)})")
        if not body:
            raise LiandanError(f"csv {p}: no rows left after dropping rows with blank cells")
    x, names, categories = _features(p, header, body, feats, columns or {})
    ys = [row[header.index(target)] for row in body]
    numeric = all(is_float(v) for v in ys)
    few_ints = numeric and all(float(v).is_integer() for v in ys) and len(set(ys)) <= 20
    kind = {"auto": CLASS if not numeric or few_ints else VALUE, "classify": CLASS, "regress": VALUE}.get(task)
    if kind is None:
        raise LiandanError(f"csv: task must be auto, classify or regress, got {task!r}")
    facts = {"feature_columns": feats, "target_column": target, "categories": categories, "notes": notes}
    splits = None
    if val is not None or test is not None or split_column is not None:
        a = np.asarray(part)
        splits = {s: np.flatnonzero(a == k) for k, s in enumerate(("train", "val", "test"))}
    if kind == VALUE:
        if not numeric:
            bad = next(v for v in ys if not is_float(v))
            raise LiandanError(f"csv {p}: regression target {target!r} has non-numeric value {bad!r}")
        return regression(x, np.array(ys, np.float32)[:, None], feature_names=names, fixed_splits=splits,
                          facts=facts)
    labels = np.array([int(float(v)) for v in ys]) if numeric else np.array(ys)
    return classification(x, labels, feature_names=names, fixed_splits=splits, facts=facts)


def _features(p: Path, header: list[str], body: list[list[str]], feats: list[str],
              columns: dict[str, str]) -> tuple[np.ndarray, list[str], dict[str, list[str]]]:
    """The feature matrix (categorical columns one-hot), its column names and the categories."""
    blocks, names, categories = [], [], {}
    for h in feats:
        vals = [row[header.index(h)] for row in body]
        if columns.get(h) == "categorical":
            cats = sorted(set(vals))
            categories[h] = cats
            blocks.append(one_hot(vals, cats))
            names += [f"{h}={c}" for c in cats]
            continue
        bad = next((r for r, v in enumerate(vals) if v and not is_float(v)), None)
        if bad is not None:
            raise LiandanError(f"csv {p}: column {h!r} row {bad + 2}: non-numeric value {vals[bad]!r}; declare "
                               f"it with data.columns: {{{h}: categorical}}")
        blocks.append(np.array([[float(v) if v else float("nan")] for v in vals], np.float32))
        names.append(h)
    x = np.concatenate(blocks, 1) if blocks else np.zeros((len(body), 0), np.float32)
    return x.astype(np.float32), names, categories


def one_hot(vals: list[str], cats: list[str]) -> np.ndarray:
    """Rows of 0/1 per category; a value outside ``cats`` is all zeros."""
    out = np.zeros((len(vals), len(cats)), np.float32)
    pos = {c: i for i, c in enumerate(cats)}
    for r, v in enumerate(vals):
        if v in pos:
            out[r, pos[v]] = 1.0
    return out
