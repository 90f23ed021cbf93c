"""Agent memory: what an agent learned across sessions, kept in one JSON-lines file in the first root.

Each line of ``<first root>/.liandan-memory.jsonl`` is one entry
``{"id", "text", "tags", "run_dir", "created"}``. Writes never leave a corrupt store:

- :meth:`MemoryStore.add` appends one whole line with a single ``write`` on an ``O_APPEND``
  descriptor, then ``fsync``; a crash can at worst leave a *truncated last line*, which
  :meth:`MemoryStore.entries` skips (every complete line is kept) and the next append starts on
  a fresh line;
- :meth:`MemoryStore.remove` rewrites the file into a temporary file in the same directory,
  ``fsync``-s it and ``os.replace``-s it over the store (atomic on POSIX and Windows), so
  readers see the old file or the new one, never a mix.

The store is opened through :mod:`liandan.paths` (reads) and with ``O_NOFOLLOW`` plus a check of
the opened descriptor (appends), so a symlink planted at its name after the sandbox resolved it
is refused rather than followed out of the roots.

One process should write a store at a time (a lock serialises the threads of one server; two
servers on one root could lose an append racing a ``forget``).

Ranking (:func:`bm25_scores`) is Okapi BM25 (Robertson & Zaragoza, "The Probabilistic Relevance
Framework: BM25 and Beyond", 2009) with Lucene's non-negative IDF::

    score(q, d) = Σ_{t ∈ q} IDF(t) · f(t,d)·(k1 + 1) / (f(t,d) + k1·(1 − b + b·|d|/avgdl))
    IDF(t)      = ln(1 + (N − n(t) + 0.5) / (n(t) + 0.5))

with k1 = 1.5, b = 0.75; ``f(t,d)`` is the count of term t in d, ``|d|`` d's length in terms,
``avgdl`` the mean length, N the number of entries and n(t) how many contain t. Terms are the
lower-cased runs of letters and digits (``wine-mlp`` → ``wine``, ``mlp``) of the text and tags;
a query term repeated counts once per occurrence.

The toolbox tools :func:`remember`, :func:`recall` and :func:`forget` are defined here and bound
into :class:`~liandan.agents.tools.Toolbox` (so MCP, function calling and A2A all get them). No
``from __future__ import annotations``: their hints are read at run time for the schemas.
"""

import json
import logging
import math
import os
import re
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from liandan.errors import LiandanError
from liandan.paths import CLOEXEC, NOFOLLOW, check_path, read_bytes, verify_fd

log = logging.getLogger("liandan.agents")

MEMORY_FILE = ".liandan-memory.jsonl"
K1, B = 1.5, 0.75
MAX_TEXT = 4000
MAX_TAGS, MAX_TAG = 16, 64
MAX_K = 100
_TOKEN = re.compile(r"[^\W_]+")
_LOCK = threading.RLock()  # one for every store of the process: stores are small, writes rare


def tokens(text: str) -> list[str]:
    """The terms of ``text``: lower-cased runs of letters and digits."""
    return _TOKEN.findall(text.lower())


def bm25_scores(query: Sequence[str], docs: Sequence[Sequence[str]], k1: float = K1, b: float = B) -> list[float]:
    """Okapi BM25 score of every tokenised doc for the tokenised query (formula in the module docstring)."""
    n_docs = len(docs)
    if not n_docs or not query:
        return [0.0] * n_docs
    avgdl = sum(len(d) for d in docs) / n_docs or 1.0
    counts = [Counter(d) for d in docs]
    df = Counter(t for c in counts for t in c)
    scores = []
    for doc, c in zip(docs, counts, strict=True):
        s = 0.0
        for t in query:
            f = c.get(t, 0)
            if f:
                idf = math.log(1 + (n_docs - df[t] + 0.5) / (df[t] + 0.5))
                s += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(doc) / avgdl))
        scores.append(s)
    return scores


def _clean_tags(tags: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for tag in tags or []:
        if not isinstance(tag, str) or not tag.strip():
            raise LiandanError("tags must be non-empty strings")
        tag = tag.strip().lower()
        if len(tag) > MAX_TAG:
            raise LiandanError(f"tag {tag[:20]!r}... is longer than {MAX_TAG} characters")
        if tag not in out:
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise LiandanError(f"at most {MAX_TAGS} tags per memory")
    return out


class MemoryStore:
    """One JSON-lines memory file (created on the first :meth:`add`)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def entries(self) -> list[dict[str, Any]]:
        """Every complete, well-formed entry, oldest first; a damaged line (a crash mid-append) is skipped."""
        with _LOCK:
            try:
                raw = read_bytes(self.path, "memory file")
            except FileNotFoundError:
                return []
        out = []
        for i, line in enumerate(raw.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                log.warning("%s: line %d is damaged (an interrupted write?); skipped", self.path, i)
                continue
            if isinstance(doc, dict) and isinstance(doc.get("id"), str) and isinstance(doc.get("text"), str):
                out.append(doc)
        return out

    def add(self, text: str, tags: Sequence[str] | None = None, run_dir: str | None = None) -> dict[str, Any]:
        """Append one entry; returns it (with its new ``id``)."""
        text = (text or "").strip()
        if not text:
            raise LiandanError("nothing to remember: text is empty")
        if len(text) > MAX_TEXT:
            raise LiandanError(f"text is longer than {MAX_TEXT} characters; remember a shorter note")
        entry = {"id": uuid.uuid4().hex[:12], "text": text, "tags": _clean_tags(tags), "run_dir": run_dir,
                 "created": datetime.now(UTC).isoformat(timespec="seconds")}
        line = json.dumps(entry, ensure_ascii=False).encode() + b"\n"
        with _LOCK:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            check_path(self.path, "memory file")
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o600)
            except OSError as e:
                raise LiandanError(f"cannot open the memory file {self.path}: {e.strerror}") from None
            try:
                verify_fd(fd, self.path, "memory file")
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # the last append was cut short: never glue onto its fragment
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry

    def remove(self, entry_id: str) -> dict[str, Any] | None:
        """Delete entry ``entry_id`` by an atomic rewrite; returns it, or None if there is none."""
        with _LOCK:
            kept, gone = [], None
            for e in self.entries():
                if e["id"] == entry_id and gone is None:
                    gone = e
                else:
                    kept.append(e)
            if gone is None:
                return None
            fd, tmp = tempfile.mkstemp(prefix=".liandan-memory-", suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(b"".join(json.dumps(e, ensure_ascii=False).encode() + b"\n" for e in kept))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return gone

    def search(self, query: str, tags: Sequence[str] | None = None, k: int = 5) -> list[dict[str, Any]]:
        """The ``k`` best entries for ``query`` by BM25 (ties: newest first) among those holding every
        tag in ``tags``; an empty query lists the newest. Each result carries its ``score``."""
        want = set(_clean_tags(tags))
        pool = [e for e in self.entries() if want <= set(e.get("tags") or [])]
        docs = [tokens(e["text"] + " " + " ".join(e.get("tags") or [])) for e in pool]
        q = tokens(query or "")
        scores = bm25_scores(q, docs) if q else [0.0] * len(pool)
        ranked = sorted(range(len(pool)), key=lambda i: (-scores[i], -i))  # later lines are newer
        out = [{**pool[i], "score": round(scores[i], 6)} for i in ranked if scores[i] > 0 or not q]
        return out[:k]


# --- the toolbox tools (bound into Toolbox; ``self`` is the Toolbox) -----------------------------


def store(self) -> MemoryStore:
    """The memory of ``self``'s sandbox: ``<first root>/.liandan-memory.jsonl``, checked by the sandbox
    on every use (a symlink planted there cannot point outside the roots)."""
    return MemoryStore(self.sandbox.resolve(MEMORY_FILE, what="memory file"))


def remember(
    self,
    text: Annotated[str, Field(description="the note, e.g. 'digits-lenet: lr 3e-3 diverged; 1e-3 reached "
                                           "0.98 test accuracy'")],
    tags: Annotated[list[str] | None, Field(description="labels to filter recall by, e.g. ['digits', "
                                                        "'lr']")] = None,
    run_dir: Annotated[str | None, Field(description="the run this note is about (inside the allowed "
                                                     "directories)")] = None,
) -> dict[str, Any]:
    """Remember a note across sessions (what worked, what failed, which run did what): appended to the
    agent memory in the first allowed directory. Returns the entry with its id (for forget)."""
    run = str(self.sandbox.run_dir(run_dir)) if run_dir else None
    return store(self).add(text, tags, run)


def recall(
    self,
    query: Annotated[str, Field(description="words to look for, e.g. 'digits accuracy'; empty: the newest "
                                            "notes")],
    tags: Annotated[list[str] | None, Field(description="only notes carrying all these tags")] = None,
    k: Annotated[int, Field(description=f"how many notes, at most {MAX_K}")] = 5,
) -> dict[str, Any]:
    """Recall notes from the agent memory, best match first (BM25 over text and tags), with past training
    runs (each finished train call leaves one). Read-only."""
    k = max(1, min(int(k), MAX_K))
    return {"query": query, "memories": store(self).search(query, tags, k)}


def forget(self, id: Annotated[str, Field(description="the note's id (from remember or recall)")]) -> dict[str, Any]:
    """Forget (delete) one note of the agent memory by id."""
    gone = store(self).remove(str(id))
    if gone is None:
        raise LiandanError(f"no memory with id {id!r} (see recall)")
    return {"forgotten": gone}


def remember_run(self, preset: str, recipe: Any, result: dict[str, Any]) -> None:
    """After a train call: one line on the run (name, data, model, status, final test metrics), tagged
    ``run``, so ``recall("digits accuracy")`` finds past runs. Never fails the training."""
    try:
        test = (result.get("final") or {}).get("test") or {}
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in test.items() if isinstance(v, (int, float)))
        text = (f"trained {recipe.name} (recipe {preset}): model {recipe.model.name} on {recipe.data.source} "
                f"data, {result.get('epochs')} epochs, {result.get('status')}; final test {metrics or 'n/a'}")
        tags = ["run", recipe.name, recipe.data.source, recipe.model.name]
        store(self).add(text, [t[:MAX_TAG] for t in tags if isinstance(t, str) and t.strip()], result.get("run_dir"))
    except (OSError, LiandanError, AttributeError, TypeError, ValueError) as e:
        log.warning("could not remember the run in the agent memory: %s", e)
