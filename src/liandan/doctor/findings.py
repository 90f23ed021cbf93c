"""Findings: what the doctor says about a run, and the doctor.json document (DESIGN.md,
"Doctor findings").

A finding names a stable ``code``, a ``severity``, the ``step``/``epoch`` where it arose, the
``evidence`` (numbers the rule measured), ranked ``causes`` drawn from that evidence, and
``fixes``: each a sentence (``say``), a recipe override (``patch``, may be empty when no
recipe key can express the fix) and ``why`` the fix works (from the knowledge base).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEVERITIES = ("info", "warning", "error")
DOCTOR_JSON = "doctor.json"


@dataclass
class Fix:
    say: str
    patch: dict[str, Any] = field(default_factory=dict)
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"say": self.say, "patch": dict(self.patch)}
        if self.why:
            d["why"] = self.why
        return d


@dataclass
class Finding:
    code: str
    severity: str
    step: int | None
    epoch: int | None
    evidence: dict[str, Any]
    causes: list[str]
    fixes: list[Fix]

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "step": self.step, "epoch": self.epoch,
                "evidence": clean(self.evidence), "causes": list(self.causes),
                "fixes": [f.to_dict() for f in self.fixes]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        fixes = [Fix(f.get("say", ""), dict(f.get("patch") or {}), f.get("why", "")) for f in d.get("fixes", [])]
        return cls(d["code"], d.get("severity", "warning"), d.get("step"), d.get("epoch"),
                   dict(d.get("evidence", {})), list(d.get("causes", [])), fixes)


def clean(v: Any) -> Any:
    """JSON-safe evidence: round floats to 4 significant digits, non-finite floats as strings."""
    if isinstance(v, dict):
        return {str(k): clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return v
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return str(f)  # "nan", "inf": JSON has no literal for them
    return float(f"{f:.4g}")


def document(findings: list[Finding] | list[dict], **extra: Any) -> dict[str, Any]:
    """The doctor.json document: ``{"healthy": bool, "findings": [...]}`` plus ``extra`` keys."""
    items = [f.to_dict() if isinstance(f, Finding) else f for f in findings]
    return {"healthy": not items, "findings": items, **extra}


def write_doctor_json(run_dir: Path, findings: list[Finding] | list[dict], **extra: Any) -> Path:
    from liandan.training.rundir import write_json

    path = Path(run_dir) / DOCTOR_JSON
    write_json(path, document(findings, **extra))
    return path


def add_finding(run_dir: str | Path, finding: dict[str, Any]) -> Path:
    """Merge an outside finding (e.g. ``ood_inputs`` from ``liandan ood``) into a run's doctor.json.

    This is the hook for checks that live outside the rule registry: a finding with the same
    code replaces the old one; ``liandan doctor RUN_DIR`` keeps such findings when it re-diagnoses.
    """
    from liandan.training.rundir import read_json

    path = Path(run_dir) / DOCTOR_JSON
    doc = read_json(path) if path.exists() else {"findings": []}
    items = [f for f in doc.get("findings", []) if f.get("code") != finding.get("code")]
    items.append({**finding, "external": True})
    return write_doctor_json(Path(run_dir), items, **{k: v for k, v in doc.items()
                                                      if k not in ("healthy", "findings")})


def format_finding(f: Finding, fixes: int = 2) -> str:
    """One or a few lines for the live log: code, where, the first cause, the top fixes."""
    where = []
    if f.step is not None:
        where.append(f"step {f.step}")
    if f.epoch is not None:
        where.append(f"epoch {f.epoch + 1}")
    head = f"doctor: [{f.severity}] {f.code}" + (f" at {', '.join(where)}" if where else "")
    lines = [head + (f": {f.causes[0]}" if f.causes else "")]
    for fx in f.fixes[:fixes]:
        sets = " ".join(f"--set {k}={_fmt(v)}" for k, v in fx.patch.items())
        lines.append(f"  fix: {fx.say}" + (f"  ({sets})" if sets else ""))
    return "\n".join(lines)


def format_document(doc: dict[str, Any]) -> str:
    """The human view of a doctor document: every finding with its evidence, causes and fixes."""
    where = doc.get("run", "")
    if doc.get("healthy"):
        return f"healthy: no findings{f' ({where})' if where else ''}"
    lines = [f"{len(doc['findings'])} finding(s){f' in {where}' if where else ''}:"]
    for d in doc["findings"]:
        f = Finding.from_dict(d)
        at = ", ".join(x for x in (f"step {f.step}" if f.step is not None else "",
                                  f"epoch {f.epoch + 1}" if f.epoch is not None else "") if x)
        lines.append(f"\n[{f.severity}] {f.code}" + (f" ({at})" if at else ""))
        ev = ", ".join(f"{k}={_fmt(v)}" for k, v in f.evidence.items() if not isinstance(v, dict))
        if ev:
            lines.append(f"  evidence: {ev}")
        for k, v in f.evidence.items():
            if isinstance(v, dict) and v:
                lines.append(f"  {k}: " + ", ".join(f"{a}={_fmt(b)}" for a, b in v.items()))
        lines += ["  causes:"] + [f"    {i + 1}. {c}" for i, c in enumerate(f.causes)]
        lines.append("  fixes:")
        for i, fx in enumerate(f.fixes):
            sets = " ".join(f"--set {k}={_fmt(v)}" for k, v in fx.patch.items())
            lines.append(f"    {i + 1}. {fx.say}" + (f"  ({sets})" if sets else ""))
            if fx.why:
                lines.append(f"       why: {fx.why}")
    lines.append(f"\nliandan explain {doc['findings'][0]['code']}  — more on causes and fixes")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    return f"{v:g}" if isinstance(v, float) else str(v)


def severity_rank(s: str) -> int:
    return SEVERITIES.index(s) if s in SEVERITIES else 1
