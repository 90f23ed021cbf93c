"""liandan's tools as OpenAI-style function-calling declarations, plus the dispatcher for the loop.

Declarations follow the Chat Completions shape (OpenAI API reference, "Function calling"):
``{"type": "function", "function": {"name", "description", "parameters", "strict": true}}``;
``api="responses"`` gives the Responses API's flat form (``name`` etc. at the top level).
With ``strict: true`` only a subset of JSON Schema is accepted (OpenAI guide "Structured
Outputs", supported schemas; as openai-python's ``to_strict_json_schema`` does):
``additionalProperties: false`` on every object, *every* property listed in ``required``, an
optional parameter written as a union with ``null``, and no ``default`` (we move a non-null
default into the description). The schemas come from the same type hints as the MCP server's
``inputSchema`` (:mod:`liandan.agents.tools`), so the two never drift.

The loop a user writes with any LLM API::

    from liandan.agents.function_calling import call_tool, openai_tools
    resp = client.chat.completions.create(model=..., messages=msgs, tools=openai_tools())
    for tc in resp.choices[0].message.tool_calls or []:
        msgs.append({"role": "tool", "tool_call_id": tc.id,
                     "content": call_tool(tc.function.name, tc.function.arguments)})

``call_tool`` validates the arguments (a JSON *string*, as the model returns them), runs the tool
inside the sandbox and returns a JSON string: the result, or ``{"error": "..."}`` for an unknown
tool, bad arguments or a user error, which the model can read and correct.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import logging
import re
import threading
from typing import Any, Literal

import pydantic

from liandan.agents.cancel import cancel_scope
from liandan.agents.tools import TOOLS, Toolbox, error_message
from liandan.errors import LiandanError

log = logging.getLogger("liandan.agents")
NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # OpenAI's rule for function names


def _unbound(name: str) -> Any:
    return getattr(Toolbox, name)


@functools.cache
def argument_models() -> dict[str, type[pydantic.BaseModel]]:
    """Tool name -> pydantic model of its arguments (``extra="forbid"``: unknown keys are errors)."""
    models = {}
    for info in TOOLS:
        params = list(inspect.signature(_unbound(info.name)).parameters.values())[1:]  # drop self
        fields: dict[str, Any] = {
            p.name: (p.annotation, ...) if p.default is p.empty else (p.annotation, p.default) for p in params
        }
        models[info.name] = pydantic.create_model(
            f"{info.name}_arguments", __config__=pydantic.ConfigDict(extra="forbid"), **fields)
    return models


def _description(name: str) -> str:
    return " ".join(inspect.cleandoc(_unbound(name).__doc__ or name).split())


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` in OpenAI's strict subset (see the module docstring); walks every object."""
    out = copy.deepcopy(schema)
    _strict(out)
    return out


def _strict(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _strict(item)
        return
    if not isinstance(node, dict):
        return
    node.pop("title", None)
    if node.get("type") == "object" or "properties" in node:
        node["type"] = "object"
        props = node.setdefault("properties", {})
        required = set(node.get("required", []))
        for key, prop in props.items():
            default = prop.pop("default", None)
            if key not in required:
                if default is not None:
                    prop["description"] = (prop.get("description", "") + f" (default: {json.dumps(default)})").strip()
                _nullable(prop)
        node["required"] = list(props)
        node["additionalProperties"] = False
    node.pop("default", None)
    for key in ("properties", "$defs", "definitions"):
        for sub in (node.get(key) or {}).values():
            _strict(sub)
    for key in ("items", "anyOf", "allOf", "oneOf", "prefixItems"):
        if key in node:
            _strict(node[key])


def _nullable(prop: dict[str, Any]) -> None:
    """Let an optional property be ``null`` (strict mode requires every property to be present)."""
    if "anyOf" in prop:
        if not any(alt.get("type") == "null" for alt in prop["anyOf"]):
            prop["anyOf"].append({"type": "null"})
    elif isinstance(prop.get("type"), str):
        if prop["type"] != "null":
            prop["type"] = [prop["type"], "null"]
    elif isinstance(prop.get("type"), list):
        if "null" not in prop["type"]:
            prop["type"].append("null")
    else:
        prop["anyOf"] = [{k: prop.pop(k) for k in list(prop) if k != "description"}, {"type": "null"}]


def openai_tools(api: Literal["chat", "responses"] = "chat", strict: bool = True) -> list[dict[str, Any]]:
    """The tool declarations for ``tools=`` of the Chat Completions (default) or Responses API."""
    decls = []
    for info in TOOLS:
        if not NAME_RE.match(info.name):  # MCP names may hold '.' and 128 chars; OpenAI's may not
            raise ValueError(f"tool name {info.name!r} is not a valid function name")
        params = argument_models()[info.name].model_json_schema()
        fn = {"name": info.name, "description": _description(info.name),
              "parameters": strict_schema(params) if strict else params, "strict": strict}
        decls.append({"type": "function", **fn} if api == "responses" else {"type": "function", "function": fn})
    return decls


@functools.cache
def _default_toolbox() -> Toolbox:
    return Toolbox()


def _error(msg: str) -> str:
    return json.dumps({"error": msg})


class ArgumentError(LiandanError):
    """An unknown tool or arguments that do not fit its schema: the call was refused, nothing ran."""


def check_argument_names(name: str, arguments: Any) -> None:
    """:class:`ArgumentError` naming the arguments that tool ``name`` does not take, and the ones it does.

    Shared by function calling, A2A and MCP (whose SDK would silently drop them). Nothing to check for
    an unknown tool or arguments that are not an object (the schema validation reports those)."""
    model = argument_models().get(name)
    if model is None or not isinstance(arguments, dict):
        return
    unknown = [str(k) for k in arguments if k not in model.model_fields]
    if unknown:
        which = ", ".join(repr(k) for k in sorted(unknown))
        allowed = ", ".join(model.model_fields) or "none"
        raise ArgumentError(f"unknown argument{'s' if len(unknown) > 1 else ''} {which} for {name}; "
                            f"allowed: {allowed}")


def validate_arguments(name: str, arguments: str | dict[str, Any] | None) -> dict[str, Any]:
    """The keyword arguments of tool ``name`` from ``arguments`` (a JSON string or a dict), validated
    against its schema; :class:`ArgumentError` (one line) for an unknown tool or bad arguments.

    Strict mode makes a model send null for every optional parameter it leaves out: null then
    means "the default", also for parameters whose default is not None."""
    models = argument_models()
    if name not in models:
        raise ArgumentError(f"unknown tool {name!r}; tools: {', '.join(models)}")
    if isinstance(arguments, str):
        try:
            args = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as e:
            raise ArgumentError(f"arguments of {name} are not valid JSON: {e.msg} (position {e.pos})") from None
    else:
        args = arguments or {}
    if not isinstance(args, dict):
        raise ArgumentError(f"arguments of {name} must be a JSON object, got {type(args).__name__}")
    check_argument_names(name, args)
    model = models[name]
    args = {k: v for k, v in args.items()
            if not (v is None and k in model.model_fields and not model.model_fields[k].is_required())}
    try:
        validated = model.model_validate(args)
    except pydantic.ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "arguments"
        raise ArgumentError(f"invalid arguments for {name}: {loc}: {err['msg']}") from None
    return {k: getattr(validated, k) for k in model.model_fields}


def call_tool(name: str, arguments: str | dict[str, Any] | None, toolbox: Toolbox | None = None,
              cancel: threading.Event | None = None) -> str:
    """Run tool ``name`` with ``arguments`` (the model's JSON string, or a dict); returns a JSON string.

    ``toolbox`` carries the sandbox (default: a :class:`Toolbox` over ``./runs``). Setting ``cancel``
    (from another thread, e.g. on your own timeout) stops a training call at its next step (it
    returns with status ``interrupted``); see :mod:`liandan.agents.cancel`. Never raises
    for the model's mistakes: unknown tool, invalid JSON, wrong or unknown arguments and user
    errors all come back as ``{"error": "..."}``."""
    try:
        kwargs = validate_arguments(name, arguments)
    except ArgumentError as e:
        return _error(str(e))
    box = toolbox or _default_toolbox()
    try:
        with cancel_scope(cancel):
            result = getattr(box, name)(**kwargs)
    except Exception as e:
        msg = error_message(e)
        if msg is None:
            log.exception("tool %s raised an unexpected exception", name)
            msg = f"internal error in tool {name} (details in the server log)"
        return _error(msg)
    return json.dumps(result)
