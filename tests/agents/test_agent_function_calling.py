"""OpenAI-style function calling: strict-mode declarations and the JSON-string dispatcher."""

from __future__ import annotations

import json
import re

import pytest

import liandan
from liandan.agents.function_calling import call_tool, openai_tools, strict_schema
from liandan.agents.tools import TOOLS


def _objects(node):
    """Every JSON-Schema object node in ``node`` (walks properties, items, anyOf, ...)."""
    if isinstance(node, list):
        for x in node:
            yield from _objects(x)
    elif isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield node
        for v in node.values():
            if isinstance(v, (dict, list)):
                yield from _objects(v)


def _walk(node):
    if isinstance(node, list):
        for x in node:
            yield from _walk(x)
    elif isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)


def _nullable(prop: dict) -> bool:
    t = prop.get("type")
    return (isinstance(t, list) and "null" in t) or any(a.get("type") == "null" for a in prop.get("anyOf", []))


def test_declarations_follow_the_strict_rules():
    decls = openai_tools()
    assert [d["function"]["name"] for d in decls] == [t.name for t in TOOLS]
    for d in decls:
        assert d["type"] == "function" and set(d["function"]) == {"name", "description", "parameters", "strict"}
        fn = d["function"]
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", fn["name"]) and fn["strict"] is True and fn["description"]
        params = fn["parameters"]
        assert params["type"] == "object"
        objects = list(_objects(params))
        assert objects and objects[0] is params
        for obj in objects:
            assert obj["additionalProperties"] is False
            assert obj["required"] == list(obj["properties"])
        for node in _walk(params):
            assert "default" not in node and "$ref" not in node
    train = next(d["function"]["parameters"] for d in decls if d["function"]["name"] == "train")
    assert not _nullable(train["properties"]["recipe"])
    assert all(_nullable(train["properties"][k]) for k in ("overrides", "epochs", "out"))
    ev = next(d["function"]["parameters"] for d in decls if d["function"]["name"] == "evaluate")
    assert '(default: "test")' in ev["properties"]["split"]["description"]


def test_responses_shape_and_strict_schema_of_a_nested_object():
    flat = openai_tools("responses")
    assert flat[0]["type"] == "function" and "name" in flat[0] and "function" not in flat[0]
    nested = {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "integer",
                                                                                           "default": 1}}}},
              "required": []}
    out = strict_schema(nested)
    inner = out["properties"]["a"]
    assert out["additionalProperties"] is False and inner["additionalProperties"] is False
    assert inner["required"] == ["b"] and inner["properties"]["b"]["type"] == ["integer", "null"]
    assert nested["properties"]["a"]["properties"]["b"]["default"] == 1  # the input is not modified


def test_dispatcher_round_trips_json(toolbox):
    args = json.dumps({"model": "lenet5", "input_shape": None, "options": None, "layers": None})
    out = json.loads(call_tool("summary", args, toolbox))
    assert out["params"] == 61706 and "layers" not in out
    assert json.loads(call_tool("list_presets", "", toolbox))["presets"]
    assert json.loads(call_tool("list_runs", {}, toolbox))["roots"] == list(toolbox.sandbox.roots)


def test_dispatcher_evaluate_matches_python(toolbox, tiny_run):
    args = json.dumps({"run_dir": tiny_run["run_dir"], "split": None, "source": None})
    out = json.loads(call_tool("evaluate", args, toolbox))
    assert out["accuracy"] == pytest.approx(liandan.evaluate(tiny_run["run_dir"])["accuracy"])


@pytest.mark.parametrize("name, args, match", [
    ("rm_rf", "{}", "unknown tool 'rm_rf'"),
    ("summary", "{not json", "not valid JSON"),
    ("summary", "[1, 2]", "must be a JSON object"),
    ("summary", '{"model": "lenet5", "evil": 1}', "evil"),
    ("summary", '{"input_shape": [1, 1, 32, 32]}', "model"),
    ("summary", '{"model": "lenet5", "input_shape": "big"}', "input_shape"),
    ("evaluate", '{"run_dir": "/etc"}', "outside the allowed directories"),
    ("train", '{"recipe": "no-such-preset"}', "no preset named"),
])
def test_dispatcher_errors_are_results(toolbox, name, args, match):
    out = json.loads(call_tool(name, args, toolbox))
    assert set(out) == {"error"} and match in out["error"] and "\n" not in out["error"]


def test_cli_prints_the_declarations(cli):
    code, out, err = cli("mcp", "--list-tools", "--json")
    assert code == 0 and json.loads(out) == openai_tools()
    code, out, _ = cli("mcp", "--list-tools")
    assert code == 0 and all(t.name in out for t in TOOLS)
