"""Agent memory: the JSON-lines store, its BM25 ranking against a hand-computed example, crash safety,
the sandbox, and the remember/recall/forget tools on every surface (Toolbox, MCP, function calling)."""

from __future__ import annotations

import json
import math
import os

import pytest

from liandan.agents.memory import MEMORY_FILE, MemoryStore, bm25_scores, tokens
from liandan.agents.sandbox import Sandbox, SandboxError
from liandan.agents.tools import TOOLS, Toolbox
from liandan.errors import LiandanError

DOCS = ["digits accuracy", "digits loss high", "wine accuracy good run"]


@pytest.fixture
def box(tmp_path) -> Toolbox:
    return Toolbox(Sandbox([tmp_path]))


def test_bm25_matches_a_hand_computed_example():
    """N = 3, avgdl = (2+3+4)/3 = 3; 'digits' and 'accuracy' are each in 2 docs, so both have
    IDF = ln(1 + (3-2+0.5)/(2+0.5)) = ln 1.6. With tf = 1, k1 = 1.5, b = 0.75 each matching term adds
    ln1.6 · 2.5 / (1 + 1.5·(0.25 + 0.75·|d|/3)):
    d1 (|d| = 2, both terms): 2 · ln1.6 · 2.5/2.125;  d2 (|d| = 3): ln1.6 · 2.5/2.5;
    d3 (|d| = 4): ln1.6 · 2.5/2.875."""
    ln16 = math.log(1.6)
    expected = [2 * ln16 * 2.5 / 2.125, ln16, ln16 * 2.5 / 2.875]
    assert expected == pytest.approx([1.1058909, 0.4700036, 0.4086988], abs=1e-7)
    scores = bm25_scores(tokens("digits accuracy"), [tokens(d) for d in DOCS])
    assert scores == pytest.approx(expected, rel=1e-12)
    assert bm25_scores(["absent"], [tokens(d) for d in DOCS]) == [0.0, 0.0, 0.0]
    assert tokens("wine-mlp: Test_Accuracy 0.97") == ["wine", "mlp", "test", "accuracy", "0", "97"]


def test_remember_recall_ranks_and_filters(box, tmp_path):
    ids = [box.remember(d)["id"] for d in DOCS]
    got = box.recall("digits accuracy")["memories"]
    assert [m["id"] for m in got] == ids  # d1 > d2 > d3, the hand-computed order
    assert got[0]["score"] == pytest.approx(1.1058909, abs=1e-6)
    assert [m["id"] for m in box.recall("digits accuracy", k=1)["memories"]] == ids[:1]
    assert box.recall("nothing matches this")["memories"] == []
    box.remember("lr 3e-3 diverged on digits", tags=["Digits", "lr", "lr"])
    tagged = box.recall("", tags=["lr"])["memories"]
    assert len(tagged) == 1 and tagged[0]["tags"] == ["digits", "lr"]  # lower-cased, deduplicated
    assert [m["text"] for m in box.recall("digits", tags=["digits"])["memories"]] == ["lr 3e-3 diverged on digits"]
    assert box.recall("")["memories"][0]["tags"] == ["digits", "lr"]  # empty query: newest first
    assert (tmp_path / MEMORY_FILE).is_file()


def test_memory_persists_across_toolboxes_and_forget(tmp_path):
    first = Toolbox(Sandbox([tmp_path]))
    keep = first.remember("resnet18 on cifar needs warmup", tags=["cifar"])
    drop = first.remember("cifar lr 0.1 diverged", tags=["cifar"])
    second = Toolbox(Sandbox([tmp_path]))  # a new session, same root
    assert {m["id"] for m in second.recall("cifar")["memories"]} == {keep["id"], drop["id"]}
    assert second.forget(drop["id"])["forgotten"]["text"] == "cifar lr 0.1 diverged"
    assert [m["id"] for m in first.recall("cifar")["memories"]] == [keep["id"]]
    with pytest.raises(LiandanError, match="no memory with id"):
        second.forget(drop["id"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [MEMORY_FILE]  # the rewrite left no temp file


def test_a_truncated_last_line_is_skipped_and_the_rest_kept(tmp_path):
    store = MemoryStore(tmp_path / MEMORY_FILE)
    a = store.add("first note")
    b = store.add("second note")
    with open(store.path, "ab") as f:  # a crash in the middle of an append
        f.write(b'{"id": "deadbeef", "text": "half a no')
    assert [e["id"] for e in store.entries()] == [a["id"], b["id"]]
    c = store.add("third note")  # starts on a fresh line: the fragment does not swallow it
    assert [e["id"] for e in store.entries()] == [a["id"], b["id"], c["id"]]
    assert store.remove(b["id"]) == b
    lines = store.path.read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [a["id"], c["id"]]  # the rewrite dropped the fragment


def test_store_stays_inside_the_sandbox(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    box = Toolbox(Sandbox([root, tmp_path / "outside"]))
    box.remember("note")
    assert (root / MEMORY_FILE).is_file() and not (outside / MEMORY_FILE).exists()  # the first root
    with pytest.raises(SandboxError, match="outside the allowed"):
        box.remember("about a run", run_dir="/etc")
    with pytest.raises(SandboxError, match="not a run directory"):
        box.remember("about a run", run_dir=str(outside))
    other = tmp_path / "other"
    other.mkdir()
    os.symlink(tmp_path / "elsewhere.jsonl", other / MEMORY_FILE)  # a planted link pointing out
    evil = Toolbox(Sandbox([other]))
    for call in (lambda: evil.remember("x"), lambda: evil.recall("x")):
        with pytest.raises(SandboxError, match="memory file"):
            call()
    assert not (tmp_path / "elsewhere.jsonl").exists()


@pytest.mark.parametrize("call, match", [
    (lambda b: b.remember("   "), "empty"),
    (lambda b: b.remember("x" * 5000), "longer than"),
    (lambda b: b.remember("x", tags=[""]), "non-empty"),
    (lambda b: b.remember("x", tags=[f"t{i}" for i in range(20)]), "at most"),
])
def test_remember_refuses_bad_notes(box, call, match):
    with pytest.raises(LiandanError, match=match):
        call(box)


def test_train_leaves_a_note_that_recall_finds(toolbox, tiny_run):
    """The conftest's tiny run was trained through the MCP train tool: it remembered itself."""
    hits = toolbox.recall("wine accuracy", tags=["run"])["memories"]
    assert hits and hits[0]["run_dir"] == tiny_run["run_dir"]
    assert "wine" in hits[0]["text"] and "accuracy" in hits[0]["text"] and "mlp" in hits[0]["tags"]


def test_memory_tools_on_mcp_and_function_calling(tmp_path):
    import anyio
    from mcp import Client

    from liandan.agents.function_calling import call_tool, openai_tools
    from liandan.agents.mcp_server import build_server

    info = {t.name: t for t in TOOLS}
    assert not info["remember"].read_only and not info["forget"].read_only and info["recall"].read_only
    assert info["forget"].destructive and not info["remember"].destructive

    async def mcp_calls() -> tuple[dict, object]:
        async with Client(build_server([tmp_path])) as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
            r = await c.call_tool("remember", {"text": "digits lenet accuracy 0.98", "tags": ["digits"]})
        assert not r.is_error
        return tools, r.structured_content

    tools, entry = anyio.run(mcp_calls)
    assert tools["forget"].annotations.destructive_hint is True and tools["recall"].annotations.read_only_hint
    assert tools["remember"].input_schema["required"] == ["text"]
    decls = {d["function"]["name"]: d["function"] for d in openai_tools()}
    for name in ("remember", "recall", "forget"):
        params = decls[name]["parameters"]
        assert decls[name]["strict"] and params["additionalProperties"] is False
        assert params["required"] == list(params["properties"])
    box = Toolbox(Sandbox([tmp_path]))
    args = json.dumps({"query": "digits accuracy", "tags": None, "k": None})
    found = json.loads(call_tool("recall", args, box))["memories"]
    assert [m["id"] for m in found] == [entry["id"]]
    assert json.loads(call_tool("forget", {"id": entry["id"]}, box))["forgotten"]["id"] == entry["id"]
    assert "no memory" in json.loads(call_tool("forget", {"id": entry["id"]}, box))["error"]
