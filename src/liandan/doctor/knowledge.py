"""The knowledge base (``knowledge.yaml``): for every problem code and training concept, what it
is, how the doctor detects it, its causes and its fixes with why each works, and sources.

Rules take their fix sentences and the *why* from here, so ``liandan explain CODE`` and the
findings say the same thing.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

from liandan.errors import LiandanError, did_you_mean


@lru_cache(maxsize=1)
def knowledge() -> dict[str, dict[str, Any]]:
    import yaml

    text = (resources.files("liandan.doctor") / "knowledge.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def topics() -> list[str]:
    return sorted(knowledge())


def topic(name: str) -> dict[str, Any]:
    kb = knowledge()
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    for k, v in kb.items():  # aliases: "he" -> he_init, "bn" -> batchnorm, ...
        if key == k or key in v.get("aliases", []):
            return {"topic": k, **v}
    names = topics()
    raise LiandanError(f"unknown topic {name!r}{did_you_mean(key, names)}; topics: {', '.join(names)}")


def fix_text(code: str, fix_id: str) -> tuple[str, str]:
    """(say, why) of fix ``fix_id`` of problem ``code``."""
    for f in knowledge().get(code, {}).get("fixes", []):
        if f.get("id") == fix_id:
            return f["say"], f.get("why", "")
    raise KeyError(f"knowledge.yaml: {code} has no fix {fix_id!r}")


def cause_text(code: str, cause_id: str) -> str:
    for c in knowledge().get(code, {}).get("causes", []):
        if c.get("id") == cause_id:
            return c["text"]
    raise KeyError(f"knowledge.yaml: {code} has no cause {cause_id!r}")


def render(name: str) -> str:
    """The plain-text page ``liandan explain TOPIC`` prints."""
    t = topic(name)
    out = [f"{t['topic']}: {t.get('title', '')}".rstrip(": "), ""]
    if t.get("summary"):
        out += [_wrap(t["summary"]), ""]
    if t.get("detect"):
        out += ["How the doctor detects it:", _wrap(t["detect"], "  "), ""]
    if t.get("causes"):
        out.append("Causes:")
        out += [f"  - {c['text']}" + (f"  [notes: {c['notes']}]" if c.get("notes") else "") for c in t["causes"]]
        out.append("")
    if t.get("fixes"):
        out.append("Fixes:")
        for f in t["fixes"]:
            out.append(f"  - {f['say']}" + (f"  [notes: {f['notes']}]" if f.get("notes") else ""))
            if f.get("why"):
                out.append(_wrap(f"why: {f['why']}", "      "))
        out.append("")
    if t.get("related"):
        out += [f"See also: {', '.join(t['related'])}", ""]
    if t.get("sources"):
        out.append("Sources:")
        out += [f"  - {s}" for s in t["sources"]]
    return "\n".join(out).rstrip() + "\n"


def _wrap(text: str, indent: str = "") -> str:
    import textwrap

    return "\n".join(textwrap.fill(p, 100, initial_indent=indent, subsequent_indent=indent)
                     for p in str(text).strip().split("\n"))
