"""liandan as an A2A agent, in process: the SDK's own client (and plain JSON-RPC POSTs, 0.3 names)
over httpx's ASGI transport; one real ``liandan a2a`` server for the bind address and stdout."""

from __future__ import annotations

import json

import pytest

import liandan
from liandan.agents.tools import TOOLS

pytestmark = pytest.mark.anyio


@pytest.fixture
def app(agent_root):
    from liandan.agents.a2a_server import build_app

    return build_app([agent_root])


def _http(app):
    import httpx

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:9999")


async def _send(app, data=None, text=None):
    """One SendMessage (A2A 1.0) through the SDK's client; returns the final Task."""
    from a2a.client import ClientConfig, ClientFactory
    from a2a.helpers import new_data_part, new_text_part
    from a2a.types import Message, Role, SendMessageRequest

    part = new_data_part(data) if data is not None else new_text_part(text)
    async with _http(app) as http:
        client = await ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create_from_url(
            "http://127.0.0.1:9999")
        msg = Message(role=Role.ROLE_USER, message_id="m-1", parts=[part])
        events = [e async for e in client.send_message(SendMessageRequest(message=msg))]
    assert len(events) == 1 and events[0].HasField("task")
    return events[0].task


def _state(task) -> str:
    from a2a.types import TaskState

    return TaskState.Name(task.status.state)


def _status_text(task) -> str:
    from a2a.helpers import get_message_text

    return get_message_text(task.status.message)


async def test_card_validates_and_lists_every_tool(app):
    from a2a.types import AgentCard
    from a2a.utils.proto_utils import validate_proto_required_fields
    from google.protobuf.json_format import ParseDict

    async with _http(app) as http:
        r = await http.get("/.well-known/agent-card.json")
    assert r.status_code == 200
    card = ParseDict(r.json(), AgentCard())  # strict: no field the 1.0 AgentCard lacks
    validate_proto_required_fields(card)  # raises on a missing REQUIRED field of the spec
    assert card.name == "liandan" and card.version == liandan.__version__ and not card.capabilities.streaming
    assert list(card.default_input_modes) == ["text/plain", "application/json"]
    iface = card.supported_interfaces[0]
    assert (iface.protocol_binding, iface.protocol_version, iface.url) == ("JSONRPC", "1.0", "http://127.0.0.1:9999/")
    assert [s.id for s in card.skills] == [t.name for t in TOOLS]
    from liandan.agents.function_calling import validate_arguments

    for skill, info in zip(card.skills, TOOLS, strict=True):
        assert skill.name == info.title and skill.description and "liandan" in skill.tags
        assert ("read-only" in skill.tags) is info.read_only and skill.examples
        for example in skill.examples:  # each example is a valid request for its skill
            doc = json.loads(example)
            assert doc["skill"] == skill.id
            validate_arguments(skill.id, doc["arguments"])


async def test_summary_of_lenet5_completes_with_an_artifact(app):
    from a2a.helpers import get_data_parts

    task = await _send(app, {"skill": "summary", "arguments": {"model": "lenet5"}})
    assert _state(task) == "TASK_STATE_COMPLETED" and _status_text(task) == "summary done"
    (artifact,) = task.artifacts
    (result,) = get_data_parts(list(artifact.parts))
    assert artifact.name == "summary" and result["params"] == 61706 and result["macs"] > 0
    assert artifact.parts[0].media_type == "application/json"


async def test_text_part_with_json_runs_the_skill(app, tiny_run):
    from a2a.helpers import get_data_parts

    task = await _send(app, text=json.dumps({"skill": "evaluate", "arguments": {"run_dir": "tiny"}}))
    assert _state(task) == "TASK_STATE_COMPLETED"
    (result,) = get_data_parts(list(task.artifacts[0].parts))
    assert result["accuracy"] == pytest.approx(liandan.evaluate(tiny_run["run_dir"])["accuracy"])


@pytest.mark.parametrize("data, state, match", [
    ({"skill": "evaluate", "arguments": {"run_dir": "/etc"}}, "FAILED", "outside the allowed directories"),
    ({"skill": "summary", "arguments": {"model": "no_such_model"}}, "FAILED", "no_such_model"),
    ({"skill": "rm_rf", "arguments": {}}, "REJECTED", "unknown skill 'rm_rf'; skills: list_presets"),
    ({"skill": "summary", "arguments": {"model": "lenet5", "evil": 1}}, "REJECTED", "evil"),
    ({"skill": "summary", "arguments": [1]}, "REJECTED", "must be a JSON object"),
    ({"skill": "summary", "extra": 1}, "REJECTED", "unexpected keys"),
    ({"no": "skill"}, "REJECTED", 'expected {"skill": NAME'),
])
async def test_refusals_are_one_line(app, data, state, match):
    task = await _send(app, data)
    text = _status_text(task)
    assert _state(task) == f"TASK_STATE_{state}" and match in text
    assert "\n" not in text and "Traceback" not in text and not task.artifacts


async def test_unexpected_errors_do_not_leak(agent_root, monkeypatch):
    from liandan.agents.a2a_server import build_app
    from liandan.agents.tools import Toolbox

    def boom(self, topic):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(Toolbox, "explain", boom)
    task = await _send(build_app([agent_root]), {"skill": "explain", "arguments": {"topic": "x"}})
    assert _state(task) == "TASK_STATE_FAILED" and "secret" not in _status_text(task)
    assert "internal error in skill explain" in _status_text(task)


async def test_v03_message_send_and_memory_skills(tmp_path):
    """Plain JSON-RPC with the 0.3 method name ``message/send``: remember, then recall, over A2A."""
    from liandan.agents.a2a_server import build_app

    app = build_app([tmp_path])

    async def post(i: int, data: dict) -> dict:
        body = {"jsonrpc": "2.0", "id": i, "method": "message/send",
                "params": {"message": {"kind": "message", "messageId": f"m{i}", "role": "user",
                                       "parts": [{"kind": "data", "data": data}]}}}
        async with _http(app) as http:
            r = await http.post("/", json=body)
        assert r.status_code == 200 and "error" not in r.json(), r.text
        return r.json()["result"]

    done = await post(1, {"skill": "remember", "arguments": {"text": "digits lenet reached 0.98 accuracy"}})
    assert done["kind"] == "task" and done["status"]["state"] == "completed"
    found = await post(2, {"skill": "recall", "arguments": {"query": "digits accuracy"}})
    memories = found["artifacts"][0]["parts"][0]["data"]["memories"]
    assert [m["text"] for m in memories] == ["digits lenet reached 0.98 accuracy"]
    bad = await post(3, {"skill": "forget", "arguments": {"id": "nope"}})
    assert bad["status"]["state"] == "failed"
    assert "no memory with id" in bad["status"]["message"]["parts"][0]["text"]


def test_cli_card(cli):
    from liandan.agents.a2a_server import agent_card, card_dict

    code, out, err = cli("a2a", "--card", "--port", "8123")
    assert code == 0 and json.loads(out) == card_dict(agent_card("http://127.0.0.1:8123/"))


def test_server_binds_localhost_and_keeps_stdout_clean(tmp_path):
    import urllib.request

    from .conftest import free_port, served

    port = free_port()
    with served(["a2a", "--root", str(tmp_path), "--port", str(port)], port, tmp_path) as proc:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/.well-known/agent-card.json", timeout=10) as r:
            card = json.loads(r.read())
        assert card["name"] == "liandan" and card["supportedInterfaces"][0]["url"] == f"http://127.0.0.1:{port}/"
    out, err = proc.communicate(timeout=10)
    assert out == b"" and f"127.0.0.1:{port}/".encode() in err
