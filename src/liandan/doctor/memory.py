"""The doctor's memory: an SQLite store of past findings, the fixes tried and their outcomes,
used to rank fixes for similar runs next time.

Location: ``doctor.memory`` in the recipe, else ``$LIANDAN_HOME/memory.db``, else
``~/.liandan/memory.db``; on an agent client's behalf (the agents' roots active,
:mod:`liandan.paths`) ``<first root>/.liandan/memory.db``, and a configured path must lie inside.
A fix's score for a finding is its similarity-weighted success rate, with the rule's own ranking
as the prior: (successes + prior·2) / (attempts + 2), where a past attempt counts more the more
of the run's signature (model, activation, data, optimizer, task) it shares, and
prior = 0.7 − 0.1·rank. AutoTrainer instead tries its repair strategies in a fixed order
(``repair_strategy('balance')``); memory lets the order learn.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from liandan.doctor.findings import Finding, Fix

SCHEMA = """
CREATE TABLE IF NOT EXISTS findings (
    id INTEGER PRIMARY KEY, ts REAL, signature TEXT, code TEXT, severity TEXT, evidence TEXT);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY, ts REAL, signature TEXT, code TEXT, say TEXT, patch TEXT, patch_keys TEXT,
    gone INTEGER, improved INTEGER, success INTEGER, metric_before REAL, metric_after REAL);
CREATE INDEX IF NOT EXISTS attempts_code ON attempts (code);
"""
SIGNATURE_KEYS = ("model", "activation", "data", "optimizer", "task")
PRIOR_WEIGHT = 2.0


def default_path(configured: str | None = None) -> Path:
    """The store's file: ``configured``, else ``memory.db`` in liandan's state folder (inside the roots
    when they are active); checked against the roots (a no-op outside the agents' sandbox)."""
    from liandan.paths import check_path, state_home

    path = Path(configured).expanduser() if configured else state_home() / "memory.db"
    return check_path(path, "doctor memory")


def signature(recipe: Any) -> dict[str, str]:
    """What makes two runs "similar" for ranking fixes."""
    return {"model": recipe.model.name, "activation": str(recipe.model.options.get("activation", "")),
            "data": recipe.data.source, "optimizer": recipe.optim.name, "task": recipe.task}


def patch_key(patch: dict[str, Any]) -> str:
    return json.dumps(patch, sort_keys=True, default=str)


class Memory:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = default_path(str(path) if path else None)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def record_finding(self, sig: dict[str, str], f: Finding) -> None:
        with self._db() as db:
            db.execute("INSERT INTO findings (ts, signature, code, severity, evidence) VALUES (?, ?, ?, ?, ?)",
                       (time.time(), json.dumps(sig, sort_keys=True), f.code, f.severity,
                        json.dumps(f.to_dict()["evidence"])))

    def record_attempt(self, sig: dict[str, str], code: str, fix: Fix, *, gone: bool, improved: bool,
                       before: float | None, after: float | None, success: bool | None = None) -> None:
        """One tried fix. ``success`` defaults to cured-and-better; the repair loop passes whether it
        kept the fix (better, or cured without harm), so a step in the right direction counts."""
        ok = (gone and improved) if success is None else success
        with self._db() as db:
            db.execute(
                "INSERT INTO attempts (ts, signature, code, say, patch, patch_keys, gone, improved, success,"
                " metric_before, metric_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), json.dumps(sig, sort_keys=True), code, fix.say, patch_key(fix.patch),
                 ",".join(sorted(fix.patch)), int(gone), int(improved), int(ok), before, after))

    def attempts(self, code: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT ts, signature, code, say, patch, gone, improved, success, metric_before, metric_after FROM attempts"
        args: tuple = ()
        if code:
            q, args = q + " WHERE code = ?", (code,)
        with self._db() as db:
            rows = db.execute(q + " ORDER BY id", args).fetchall()
        keys = ("ts", "signature", "code", "say", "patch", "gone", "improved", "success", "before", "after")
        out = []
        for r in rows:
            d = dict(zip(keys, r, strict=True))
            d["signature"], d["patch"] = json.loads(d["signature"]), json.loads(d["patch"])
            out.append(d)
        return out

    def findings(self, code: str | None = None) -> list[dict[str, Any]]:
        q, args = "SELECT ts, signature, code, severity, evidence FROM findings", ()
        if code:
            q, args = q + " WHERE code = ?", (code,)
        with self._db() as db:
            rows = db.execute(q + " ORDER BY id", args).fetchall()
        return [{"ts": r[0], "signature": json.loads(r[1]), "code": r[2], "severity": r[3],
                 "evidence": json.loads(r[4])} for r in rows]

    def score(self, code: str, sig: dict[str, str], fix: Fix) -> tuple[float, float]:
        """(Laplace success-rate estimate, weight of evidence) of ``fix`` for ``code`` on runs like ``sig``."""
        wins, tries = self.tally(code, sig, fix)
        return (wins + 1.0) / (tries + 2.0), tries

    def tally(self, code: str, sig: dict[str, str], fix: Fix) -> tuple[float, float]:
        """Similarity-weighted (successes, attempts) of ``fix`` for ``code`` on runs like ``sig``.

        An attempt with the same patch counts fully; one that set the same keys to other values
        (e.g. another learning rate) counts half.
        """
        exact, keys = patch_key(fix.patch), ",".join(sorted(fix.patch))
        with self._db() as db:
            rows = db.execute("SELECT signature, patch, patch_keys, success FROM attempts WHERE code = ?",
                              (code,)).fetchall()
        wins = tries = 0.0
        for s, p, k, ok in rows:
            if p != exact and (not keys or k != keys):
                continue
            other = json.loads(s)
            w = (1.0 + sum(other.get(x) == sig.get(x) for x in SIGNATURE_KEYS)) / (1 + len(SIGNATURE_KEYS))
            w *= 1.0 if p == exact else 0.5
            wins += w * ok
            tries += w
        return wins, tries

    def rank(self, code: str, sig: dict[str, str], fixes: list[Fix]) -> list[Fix]:
        """``fixes`` reordered by remembered success, starting from the rule's order.

        The rule's ranking (from this run's evidence) is the prior: the i-th fix starts at
        0.7 − 0.1·i (≥ 0.2), worth PRIOR_WEIGHT pseudo-attempts; remembered attempts, weighted by
        similarity, move it from there. One success on a dissimilar run does not overturn the
        evidence; repeated outcomes on similar runs do.
        """
        scored = []
        for i, f in enumerate(fixes):
            prior = max(0.2, 0.7 - 0.1 * i)
            wins, tries = self.tally(code, sig, f)
            scored.append((-(wins + prior * PRIOR_WEIGHT) / (tries + PRIOR_WEIGHT), i, f))
        return [f for _, _, f in sorted(scored, key=lambda t: (t[0], t[1]))]
