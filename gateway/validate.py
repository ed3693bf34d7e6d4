"""Cheap structural checks of a request body: a clear 400 here beats an upstream's cryptic one.

They also guard the adapters behind them: a translation (Anthropic, Gemini) may take a message's
`content`, a tool's `function` or a call's `id` to have the type OpenAI documents, so a value of another
type is refused here rather than failing deep inside one provider with a 500.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import bad_request
from providers.base import Endpoint

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _positive_int(body: dict[str, Any], key: str) -> None:
    value = body.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise bad_request(f"{key} must be a positive integer", param=key)


def _number(body: dict[str, Any], key: str, lo: float, hi: float) -> None:
    value = body.get(key)
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or not lo <= value <= hi:
        raise bad_request(f"{key} must be a number between {lo:g} and {hi:g}", param=key)


def _typed(value: Any, types: type | tuple[type, ...], param: str, what: str) -> None:
    """None (absent) passes; anything else must be one of `types`."""
    if value is not None and not isinstance(value, types):
        raise bad_request(f"{param} must be {what}", param=param)


def model_of(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("you must provide a model parameter", param="model")
    return model


def stream_flag(body: dict[str, Any]) -> bool:
    stream = body.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise bad_request("stream must be a boolean", param="stream")
    return stream


def _content(content: Any, where: str) -> None:
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise bad_request(f"{where} must be a string or an array of content parts", param=where)
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise bad_request(f"{where}[{j}] must be an object with a type", param=f"{where}[{j}]")
        _typed(part.get("image_url"), (dict, str), f"{where}[{j}].image_url", "an object")
        for key in ("file", "input_audio"):
            _typed(part.get(key), dict, f"{where}[{j}].{key}", "an object")


def _function(function: Any, where: str, *, arguments: bool) -> None:
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise bad_request(f"{where} must be an object with a name", param=where)
    if arguments:
        _typed(function.get("arguments"), (str, dict), f"{where}.arguments", "a JSON string")
    else:
        _typed(function.get("parameters"), dict, f"{where}.parameters", "a JSON Schema object")
        _typed(function.get("description"), str, f"{where}.description", "a string")


def _message(m: Any, i: int) -> None:
    where = f"messages[{i}]"
    role = m.get("role") if isinstance(m, dict) else None
    # isinstance first: a list or an object as the role is unhashable in a set.
    if not isinstance(role, str) or role not in _ROLES:
        raise bad_request(f"{where} must be an object with a valid role", param=where)
    _content(m.get("content"), f"{where}.content")
    for key in ("name", "tool_call_id"):
        _typed(m.get(key), str, f"{where}.{key}", "a string")
    calls = m.get("tool_calls")
    _typed(calls, list, f"{where}.tool_calls", "an array")
    for j, call in enumerate(calls or ()):
        param = f"{where}.tool_calls[{j}]"
        if not isinstance(call, dict) or not isinstance(call.get("id"), str):
            raise bad_request(f"{param} must be an object with an id", param=param)
        _function(call.get("function"), f"{param}.function", arguments=True)


def _tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    _typed(tools, list, "tools", "an array")
    for i, tool in enumerate(tools or ()):
        if not isinstance(tool, dict) or not isinstance(tool.get("type", "function"), str):
            raise bad_request(f"tools[{i}] must be an object with a type", param=f"tools[{i}]")
        if tool.get("type", "function") == "function":
            _function(tool.get("function"), f"tools[{i}].function", arguments=False)
    choice = body.get("tool_choice")
    _typed(choice, (str, dict), "tool_choice", "a string or an object")
    if isinstance(choice, dict):
        _typed(choice.get("function"), dict, "tool_choice.function", "an object")


def _chat(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty array", param="messages")
    for i, m in enumerate(messages):
        _message(m, i)
    _tools(body)
    _typed(body.get("response_format"), dict, "response_format", "an object")
    if isinstance(body.get("response_format"), dict):
        schema = body["response_format"].get("json_schema")
        _typed(schema, dict, "response_format.json_schema", "an object")


def check_openai(body: dict[str, Any], endpoint: Endpoint) -> None:
    if endpoint is Endpoint.CHAT:
        _chat(body)
    elif endpoint is Endpoint.TEXT:
        if not isinstance(body.get("prompt"), str | list):
            raise bad_request("prompt must be a string or an array", param="prompt")
    else:
        value = body.get("input")
        if not isinstance(value, str | list) or (isinstance(value, list) and not value):
            raise bad_request("input must be a non-empty string or array", param="input")
    for key in ("max_tokens", "max_completion_tokens", "n"):
        _positive_int(body, key)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    stop = body.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise bad_request("stop must be a string or an array of strings", param="stop")
    _typed(body.get("user"), str, "user", "a string")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_request("stream_options must be an object", param="stream_options")
