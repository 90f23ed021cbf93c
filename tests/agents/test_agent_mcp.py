"""The MCP server, in memory through the SDK's own client (``Client(server)``, v2 API)."""

from __future__ import annotations

import json

import pytest

import liandan
from liandan.agents.tools import TOOLS

pytestmark = pytest.mark.anyio


@pytest.fixture
def server(agent_root):
    from liandan.agents.mcp_server import build_server

    return build_server([agent_root])


async def _call(server, name: str, args: dict):
    from mcp import Client

    async with Client(server) as c:
        return await c.call_tool(name, args)


async def test_tools_are_listed_with_schemas_and_annotations(server):
    from mcp import Client

    async with Client(server) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert list(tools) == [t.name for t in TOOLS]
    for info in TOOLS:
        t = tools[info.name]
        assert t.description and t.input_schema["type"] == "object"
        assert t.annotations.read_only_hint is info.read_only and t.annotations.open_world_hint is False
    train = tools["train"]
    assert train.input_schema["required"] == ["recipe"]
    assert set(train.input_schema["properties"]) == {"recipe", "overrides", "epochs", "out"}
    assert train.input_schema["properties"]["overrides"]["anyOf"][0] == {"items": {"type": "string"}, "type": "array"}
    assert train.annotations.destructive_hint is False and train.annotations.idempotent_hint is False
    ev = tools["evaluate"].input_schema
    assert ev["required"] == ["run_dir"] and ev["properties"]["split"]["default"] == "test"
    assert "description" in ev["properties"]["run_dir"]
    assert tools["summary"].input_schema["properties"]["input_shape"]["anyOf"][0]["items"] == {"type": "integer"}


async def test_summary_of_lenet5(server):
    r = await _call(server, "summary", {"model": "lenet5"})
    assert not r.is_error
    assert r.structured_content["params"] == 61706 and r.structured_content["macs"] > 0


async def test_evaluate_matches_python(server, tiny_run):
    r = await _call(server, "evaluate", {"run_dir": tiny_run["run_dir"], "split": "test"})
    assert not r.is_error
    expected = liandan.evaluate(tiny_run["run_dir"], split="test")
    assert r.structured_content["accuracy"] == pytest.approx(expected["accuracy"])
    assert r.structured_content["n"] == expected["n"]
    assert json.loads(r.content[0].text)["accuracy"] == pytest.approx(expected["accuracy"])


@pytest.mark.parametrize("name, args, match", [
    ("evaluate", {"run_dir": "/etc"}, "outside the allowed directories"),
    ("evaluate", {"run_dir": "../../.."}, "outside the allowed directories"),
    ("predict", {"run_dir": "tiny", "files": ["/etc/passwd"]}, "outside the allowed directories"),
    ("train", {"recipe": "no-such-preset"}, "no preset named 'no-such-preset'"),
    ("summary", {"model": "no_such_model"}, "no_such_model"),
    ("summary", {"model": "lenet5", "input_shape": "big"}, "input_shape"),  # schema validation
])
async def test_clean_tool_errors(server, tiny_run, name, args, match):
    r = await _call(server, name, args)
    assert r.is_error
    text = r.content[0].text
    assert match in text and "Traceback" not in text and "\n" not in text


async def test_unexpected_errors_do_not_leak(agent_root, monkeypatch):
    from liandan.agents.mcp_server import build_server
    from liandan.agents.tools import Toolbox

    def boom(self, topic):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(Toolbox, "explain", boom)
    r = await _call(build_server([agent_root]), "explain", {"topic": "x"})
    assert r.is_error and "secret" not in r.content[0].text and "explain" in r.content[0].text


async def test_run_summary_resource(server, tiny_run):
    from mcp import Client

    name = tiny_run["run_dir"].rsplit("/", 1)[-1]
    async with Client(server) as c:
        templates = (await c.list_resource_templates()).resource_templates
        assert templates[0].uri_template == "liandan://runs/{run}/summary"
        res = await c.read_resource(f"liandan://runs/{name}/summary")
        assert json.loads(res.contents[0].text)["status"] == "completed"
        with pytest.raises(Exception):  # noqa: B017 (the SDK raises its protocol error type)
            await c.read_resource("liandan://runs/../summary")


async def test_run_summary_resource_refuses_a_planted_link(tmp_path):
    """A run folder inside the root whose summary.json links outside: refused, nothing read."""
    from mcp import Client

    from liandan.agents.mcp_server import build_server

    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "planted").mkdir(parents=True)
    outside.mkdir()
    (outside / "summary.json").write_text('{"status": "OUTSIDE-SECRET-41"}')
    (root / "planted" / "summary.json").symlink_to(outside / "summary.json")
    (root / "planted" / "recipe.yaml").write_text("data: {source: iris}\nmodel: {name: mlp}\n")
    async with Client(build_server([root])) as c:
        with pytest.raises(Exception) as err:  # noqa: B017 (the SDK raises its protocol error type)
            await c.read_resource("liandan://runs/planted/summary")
        assert "OUTSIDE-SECRET-41" not in str(err.value)
        assert (await c.list_resource_templates()).resource_templates  # the server is still alive
