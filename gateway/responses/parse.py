"""Structural checks of a Responses request: a clear 400 with the field's name, before any routing."""

from __future__ import annotations

from typing import Any

from gateway.errors import bad_request

# Fields the gateway cannot honour on any upstream: it keeps no conversations, prompts or
# background jobs of its own.
_UNSUPPORTED = {
    "conversation": "conversations are not supported: chain responses with previous_response_id",
    "prompt": "stored prompt templates are not supported: send the instructions and input",
    "background": "background responses are not supported",
}
_FORMATS = ("text", "json_object", "json_schema")
_METADATA_KEYS = 16


def _typed(body: dict[str, Any], key: str, types: type | tuple[type, ...], what: str) -> Any:
    value = body.get(key)
    if value is not None and not isinstance(value, types):
        raise bad_request(f"{key} must be {what}", param=key)
    return value


def _number(body: dict[str, Any], key: str, lo: float, hi: float) -> None:
    value = body.get(key)
    if value is not None and (
        not isinstance(value, int | float) or isinstance(value, bool) or not lo <= value <= hi
    ):
        raise bad_request(f"{key} must be a number between {lo:g} and {hi:g}", param=key)


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's `input` as items: a string is one user message."""
    value = body.get("input")
    if isinstance(value, str):
        if not value and body.get("previous_response_id") is None:
            raise bad_request("input must not be empty", param="input")
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list) or (not value and body.get("previous_response_id") is None):
        raise bad_request("input must be a string or a non-empty array of input items", param="input")
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("type", "message"), str):
            raise bad_request(f"input[{i}] must be an object with a type", param=f"input[{i}]")
    return value


def _tools(body: dict[str, Any]) -> None:
    tools = _typed(body, "tools", list, "an array of tools")
    for i, tool in enumerate(tools or ()):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise bad_request(f"{where} must be an object with a type", param=where)
        if tool["type"] == "function":
            if not isinstance(tool.get("name"), str) or not tool["name"]:
                raise bad_request(f"{where}.name must be a non-empty string", param=f"{where}.name")
            if tool.get("parameters") is not None and not isinstance(tool["parameters"], dict):
                raise bad_request(
                    f"{where}.parameters must be a JSON Schema object", param=f"{where}.parameters"
                )
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice, str | dict):
        raise bad_request("tool_choice must be a string or an object", param="tool_choice")
    if isinstance(choice, dict) and (
        not isinstance(choice.get("type"), str)
        or (choice["type"] == "function" and not isinstance(choice.get("name"), str))
    ):
        raise bad_request("tool_choice must have a type, and a function's a name string", param="tool_choice")


def _text(body: dict[str, Any]) -> None:
    text = _typed(body, "text", dict, "an object")
    fmt = (text or {}).get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") not in _FORMATS:
        raise bad_request(
            "text.format.type must be one of text, json_object, json_schema", param="text.format"
        )
    if fmt["type"] == "json_schema" and (
        not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict)
    ):
        raise bad_request(
            "text.format of type json_schema needs a name and a schema object", param="text.format"
        )


def check(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Raise a 400 for what no upstream could take; the request's input items otherwise."""
    for key, why in _UNSUPPORTED.items():
        if body.get(key):
            raise bad_request(why, param=key)
    items = input_items(body)
    _typed(body, "instructions", str, "a string")
    _typed(body, "previous_response_id", str, "a string")
    _typed(body, "store", bool, "a boolean")
    _tools(body)
    _text(body)
    reasoning = _typed(body, "reasoning", dict, "an object")
    if reasoning and reasoning.get("effort") is not None and not isinstance(reasoning["effort"], str):
        raise bad_request("reasoning.effort must be a string", param="reasoning.effort")
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise bad_request("max_output_tokens must be a positive integer", param="max_output_tokens")
    metadata = _typed(body, "metadata", dict, "an object of strings")
    if metadata and (
        len(metadata) > _METADATA_KEYS or not all(isinstance(v, str) for v in metadata.values())
    ):
        raise bad_request(f"metadata must hold at most {_METADATA_KEYS} string values", param="metadata")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    return items


def builtin_tools(body: dict[str, Any]) -> list[str]:
    """The types of the request's tools that only OpenAI's own Responses API runs (web_search,
    file_search, computer_use, code_interpreter...)."""
    return [t["type"] for t in body.get("tools") or () if t["type"] != "function"]
