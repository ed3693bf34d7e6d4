"""Anthropic Messages calls served by OpenAI-shaped deployments: the request to OpenAI chat completions,
the answer back. Pure: no I/O.

The gateway's `/v1/messages` uses this when the chosen deployment is not Anthropic (an Anthropic one
gets the client's bytes untouched). Streams: `providers.anthropic_translate_stream`. The opposite
direction, for the Anthropic adapter, is `providers.anthropic_translate_upstream`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from providers.anthropic_translate_stream import openai_usage_to_anthropic, stop_reason_from_openai


class TranslationError(ValueError):
    """The request cannot be expressed in the other API; a client error (HTTP 400), never retried."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def objects(value: Any, param: str) -> list[Mapping[str, Any]]:
    """`value` as a list of JSON objects (None: none), or a TranslationError naming `param`."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise TranslationError(f"{param} must be an array", param=param)
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise TranslationError(f"{param}[{i}] must be an object", param=f"{param}[{i}]")
    return value


def _text(block: Mapping[str, Any], param: str, key: str = "text") -> str:
    text = block.get(key)
    if text is not None and not isinstance(text, str):
        raise TranslationError(f"{param}.{key} must be a string", param=f"{param}.{key}")
    return text or ""


def anthropic_request_to_openai(body: Mapping[str, Any]) -> dict[str, Any]:
    """An Anthropic Messages request -> an OpenAI chat completions request. `top_k`, `thinking` and
    `cache_control` markers have no OpenAI equivalent and are dropped."""
    try:
        return _request_to_openai(body)
    except (AttributeError, TypeError) as exc:
        # The body is client JSON of any shape: a field of a type not checked above is the client's
        # error (400), not the gateway's (500).
        raise TranslationError(f"a field of the request has the wrong type ({exc})") from None


def _request_to_openai(body: Mapping[str, Any]) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        if isinstance(system, str):
            text = system
        else:
            text = "\n".join(_text(b, f"system[{i}]") for i, b in enumerate(objects(system, "system")))
        messages.append({"role": "system", "content": text})
    for i, message in enumerate(objects(body.get("messages"), "messages")):
        role = message.get("role")
        where = f"messages[{i}]"
        if role == "user":
            messages += _user_to_openai(message.get("content"), where)
        elif role == "assistant":
            messages.append(_assistant_to_openai(message.get("content"), where))
        else:
            raise TranslationError(f"unsupported message role {role!r}", param=f"{where}.role")

    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("max_tokens") is not None:
        out["max_tokens"] = body["max_tokens"]
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    stop = body.get("stop_sequences")
    if stop:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise TranslationError("stop_sequences must be an array of strings", param="stop_sequences")
        out["stop"] = list(stop)
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise TranslationError("metadata must be an object", param="metadata")
    user_id = metadata.get("user_id")
    if user_id:
        out["user"] = str(user_id)
    tools = objects(body.get("tools"), "tools")
    if tools:
        out["tools"] = [_tool_to_openai(t, f"tools[{i}]") for i, t in enumerate(tools)]
        choice = body.get("tool_choice")
        if choice:
            if not isinstance(choice, Mapping):
                raise TranslationError("tool_choice must be an object", param="tool_choice")
            out["tool_choice"] = _tool_choice_to_openai(choice)
            if choice.get("disable_parallel_tool_use") and choice.get("type") != "none":
                out["parallel_tool_calls"] = False
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _user_to_openai(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    # OpenAI wants tool results as their own messages right after the assistant's calls, before any
    # new user content; images inside tool results can only travel in a user message.
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(objects(content, f"{where}.content")):
        param = f"{where}.content[{j}]"
        if block.get("type") == "tool_result":
            if not isinstance(block.get("tool_use_id"), str):
                raise TranslationError("tool_use_id must be a string", param=f"{param}.tool_use_id")
            text, images = _tool_result_to_openai(block, param)
            tool_messages.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
            parts += images
        else:
            parts.append(_block_to_openai_part(block, param))
    if not parts:
        return tool_messages
    if all(p["type"] == "text" for p in parts):
        user_content: Any = "\n".join(p["text"] for p in parts)
    else:
        user_content = parts
    return [*tool_messages, {"role": "user", "content": user_content}]


def _block_to_openai_part(block: Mapping[str, Any], param: str) -> dict[str, Any]:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": _text(block, param)}
    source = block.get("source") or {}
    if not isinstance(source, Mapping):
        raise TranslationError(f"{param}.source must be an object", param=f"{param}.source")
    if kind == "image":
        if source.get("type") == "base64":
            url = f"data:{source.get('media_type')};base64,{source.get('data')}"
        elif source.get("type") == "url":
            url = str(source.get("url"))
        else:
            raise TranslationError(f"image source {source.get('type')!r} is Anthropic-only", param=param)
        return {"type": "image_url", "image_url": {"url": url}}
    if kind == "document":
        if source.get("type") == "text":
            return {"type": "text", "text": _text(source, f"{param}.source", "data")}
        if source.get("type") == "base64":
            data_url = f"data:{source.get('media_type')};base64,{source.get('data')}"
            return {"type": "file", "file": {"filename": "document.pdf", "file_data": data_url}}
        raise TranslationError(f"document source {source.get('type')!r} is Anthropic-only", param=param)
    raise TranslationError(f"content block type {kind!r} is not supported by this model", param=param)


def _tool_result_to_openai(block: Mapping[str, Any], param: str) -> tuple[str, list[dict[str, Any]]]:
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    else:
        for j, inner in enumerate(objects(content, f"{param}.content")):
            part = _block_to_openai_part(inner, f"{param}.content[{j}]")
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                images.append(part)
    text = "\n".join(texts)
    if block.get("is_error"):
        # OpenAI has no error flag on tool results; say it in the text so the model still knows.
        text = f"Error: {text}" if text else "Error"
    return text, images


def _assistant_to_openai(content: Any, where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for j, block in enumerate(objects(content, f"{where}.content")):
        kind = block.get("type")
        if kind == "text":
            texts.append(_text(block, f"{where}.content[{j}]"))
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise TranslationError(
                    "tool_use blocks need a string id and name", param=f"{where}.content[{j}]"
                )
            arguments = orjson.dumps(block.get("input") or {}).decode()
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue  # Anthropic-signed reasoning means nothing to another model
        else:
            raise TranslationError(
                f"content block type {kind!r} is not supported by this model", param=f"{where}.content[{j}]"
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _tool_to_openai(tool: Mapping[str, Any], param: str) -> dict[str, Any]:
    # Client tools have no type (or "custom"); typed ones (web_search_..., bash_...) run on Anthropic.
    if tool.get("type") not in (None, "custom"):
        raise TranslationError(
            f"tool type {tool.get('type')!r} only works with Anthropic models", param=param
        )
    schema = tool.get("input_schema") or {"type": "object", "properties": {}}
    if not isinstance(tool.get("name"), str) or not isinstance(schema, Mapping):
        raise TranslationError("tools need a name and an input_schema object", param=param)
    function: dict[str, Any] = {"name": tool["name"], "parameters": schema}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice_to_openai(choice: Mapping[str, Any]) -> Any:
    kind = choice.get("type")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool" and isinstance(choice.get("name"), str) and choice["name"]:
        return {"type": "function", "function": {"name": choice["name"]}}
    raise TranslationError(f"unsupported tool_choice {dict(choice)!r}", param="tool_choice")


def openai_response_to_anthropic(data: Mapping[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI `chat.completion` -> an Anthropic `message` (first choice only)."""
    choices = data.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, list):  # some servers answer with content parts
        text = "".join(p.get("text") or "" for p in text if isinstance(p, Mapping))
    if text:
        content.append({"type": "text", "text": text})
    tool_calls = message.get("tool_calls") or []
    for call in tool_calls:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": function.get("name") or "",
                "input": _arguments_object(function.get("arguments")),
            }
        )
    upstream_id = str(data.get("id") or uuid.uuid4().hex)
    return {
        "id": "msg_" + upstream_id.removeprefix("chatcmpl-"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason_from_openai(choice.get("finish_reason"), has_tool_calls=bool(tool_calls)),
        "stop_sequence": None,
        "usage": openai_usage_to_anthropic(data.get("usage")),
    }


def _arguments_object(arguments: Any) -> dict[str, Any]:
    # Anthropic clients require `input` to be an object; a model that emitted malformed JSON gets {}
    # rather than failing the whole answer.
    if isinstance(arguments, Mapping):
        return dict(arguments)
    try:
        parsed = orjson.loads(arguments or "{}")
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}
