"""OpenAI chat calls sent to an Anthropic upstream: the request to Anthropic Messages, the answer back.

Pure: no I/O. Used by `providers.anthropic` (streams: `providers.anthropic_translate_stream`).

Choices worth knowing:
- OpenAI system/developer messages anywhere in the conversation are hoisted, in order, into Anthropic's
  top-level `system` (Anthropic has no mid-conversation system turn).
- Anthropic needs strictly alternating user/assistant turns, with tool results first in the user turn
  that follows the tool calls: consecutive same-role messages (tool results plus user text) are merged.
- `response_format` json_object/json_schema becomes an instruction appended to the system prompt:
  Anthropic's native structured output is model-dependent, a prompt works on every model.
- `temperature` is clamped to Anthropic's 0..1 (OpenAI allows up to 2) rather than failing a request
  the client considers valid.
- `n > 1` is refused (TranslationError); logprobs, seed, penalties, logit_bias and stream_options are
  dropped. Anything not listed here is not forwarded, so Anthropic never sees a field it rejects.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from providers.anthropic_translate import TranslationError, objects
from providers.anthropic_translate_stream import anthropic_usage_to_openai, finish_reason_from_anthropic

# Anthropic requires max_tokens; OpenAI clients usually omit it.
DEFAULT_MAX_TOKENS = 4096

JSON_OBJECT_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else: no prose, no markdown code fences."
)

_DATA_URL = re.compile(r"^data:(?P<media>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*),(?P<data>.*)$", re.DOTALL)

# Fields Anthropic accepts that OpenAI clients sometimes send anyway (e.g. via extra_body): passed on.
_ANTHROPIC_PASSTHROUGH = ("top_k", "thinking")


def openai_request_to_anthropic(body: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI chat completions request -> an Anthropic Messages request."""
    try:
        return _request_to_anthropic(body)
    except TranslationError:
        raise
    except (AttributeError, TypeError, ValueError) as exc:
        # The body is client JSON of any shape: a field of a type not checked here is the client's
        # error (400), not the gateway's (500).
        raise TranslationError(f"a field of the request has the wrong type ({exc})") from None


def _request_to_anthropic(body: Mapping[str, Any]) -> dict[str, Any]:
    n = body.get("n")
    if n is not None and n != 1:
        raise TranslationError("n > 1 is not supported by Anthropic models", param="n")

    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(objects(body.get("messages"), "messages")):
        role = message.get("role")
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            system += _marked(_text_blocks(message.get("content"), where), message)
        elif role == "user":
            _append_turn(turns, "user", _marked(_user_blocks(message.get("content"), where), message))
        elif role == "assistant":
            _append_turn(turns, "assistant", _marked(_assistant_blocks(message, where), message))
        elif role == "tool":
            _append_turn(turns, "user", _marked([_tool_result_block(message, where)], message))
        else:
            raise TranslationError(f"unsupported message role {role!r}", param=f"{where}.role")

    instruction = _response_format_instruction(body.get("response_format"))
    if instruction:
        system.append({"type": "text", "text": instruction})

    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    out: dict[str, Any] = {"model": body.get("model"), "max_tokens": int(max_tokens)}
    if system:
        out["system"] = _collapse(system)
    out["messages"] = [{"role": t["role"], "content": _collapse(t["content"])} for t in turns]

    temperature = body.get("temperature")
    if temperature is not None:
        out["temperature"] = min(max(float(temperature), 0.0), 1.0)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("user"):
        out["metadata"] = {"user_id": str(body["user"])}
    for key in _ANTHROPIC_PASSTHROUGH:
        if body.get(key) is not None:
            out[key] = body[key]

    tools = objects(body.get("tools"), "tools")
    if tools:
        out["tools"] = [_tool_to_anthropic(t, f"tools[{i}]") for i, t in enumerate(tools)]
        choice = _tool_choice_to_anthropic(body.get("tool_choice"))
        if body.get("parallel_tool_calls") is False and choice.get("type") != "none":
            choice["disable_parallel_tool_use"] = True
        if choice != {"type": "auto"}:
            out["tool_choice"] = choice
    if body.get("stream"):
        out["stream"] = True
    return out


def _append_turn(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:  # Anthropic rejects empty turns; an empty message carries nothing anyway
        return
    if turns and turns[-1]["role"] == role:
        merged = turns[-1]["content"] + blocks
        # Anthropic wants every tool_result before any other block of the user turn.
        merged.sort(key=lambda b: b.get("type") != "tool_result")
        turns[-1]["content"] = merged
    else:
        turns.append({"role": role, "content": list(blocks)})


def _collapse(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A lone plain text block is sent as a string, the form most requests take on the wire."""
    if len(blocks) == 1 and blocks[0].get("type") == "text" and set(blocks[0]) == {"type", "text"}:
        return blocks[0]["text"]
    return blocks


def _text_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for j, part in enumerate(objects(content, f"{where}.content")):
        if part.get("type") not in ("text", "refusal"):
            raise TranslationError("only text content is allowed here", param=f"{where}.content[{j}]")
        text = part.get("text") or part.get("refusal") or ""
        if not isinstance(text, str):
            raise TranslationError("text must be a string", param=f"{where}.content[{j}].text")
        if text:  # Anthropic rejects empty text blocks
            blocks.append(_with_cache_control({"type": "text", "text": text}, part))
    return blocks


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return _text_blocks(content, where)
    blocks = []
    for j, part in enumerate(objects(content, f"{where}.content")):
        kind = part.get("type")
        param = f"{where}.content[{j}]"
        if kind == "text":
            blocks += _text_blocks([part], where)
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            blocks.append(_with_cache_control(_image_block(str(url or ""), param), part))
        elif kind == "file":
            blocks.append(_with_cache_control(_file_block(part.get("file") or {}, param), part))
        else:
            raise TranslationError(f"content part type {kind!r} is not supported by Anthropic", param=param)
    return blocks


def _image_block(url: str, param: str) -> dict[str, Any]:
    if url.startswith("data:"):
        media_type, data = _parse_data_url(url, param)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise TranslationError("image_url must be an http(s) URL or a base64 data: URL", param=param)


def _file_block(file: Mapping[str, Any], param: str) -> dict[str, Any]:
    data_url = file.get("file_data")
    if not data_url:
        raise TranslationError("file parts need inline file_data (file ids are OpenAI-only)", param=param)
    media_type, data = _parse_data_url(str(data_url), param)
    if media_type != "application/pdf":
        raise TranslationError(f"file type {media_type!r} is not supported by Anthropic", param=param)
    return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _parse_data_url(url: str, param: str) -> tuple[str, str]:
    match = _DATA_URL.match(url)
    if not match or ";base64" not in (match.group("params") or "") or not match.group("media"):
        raise TranslationError("data: URLs must be base64 with a media type", param=param)
    return match.group("media").lower(), match.group("data")


def _assistant_blocks(message: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    blocks = _text_blocks(message.get("content"), where)
    for j, call in enumerate(objects(message.get("tool_calls"), f"{where}.tool_calls")):
        function = call.get("function") or {}
        param = f"{where}.tool_calls[{j}].function.arguments"
        arguments = function.get("arguments") or "{}"
        try:
            parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError as exc:
            raise TranslationError("tool call arguments must be a JSON object", param=param) from exc
        if not isinstance(parsed, dict):
            raise TranslationError("tool call arguments must be a JSON object", param=param)
        blocks.append(
            {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": parsed}
        )
    return blocks


def _tool_result_block(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content:
        parts = _text_blocks(content, where)
        if parts:
            block["content"] = parts
    return block


def _marked(blocks: list[dict[str, Any]], message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A message-level cache_control (LiteLLM's form for string content) marks the message's last
    block: Anthropic caches the prompt up to and including the block that carries it."""
    if blocks and message.get("cache_control"):
        blocks[-1] = {**blocks[-1], "cache_control": message["cache_control"]}
    return blocks


def _with_cache_control(block: dict[str, Any], part: Mapping[str, Any]) -> dict[str, Any]:
    # LiteLLM-style clients mark OpenAI parts with Anthropic's cache_control; keep prompt caching working.
    if part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _response_format_instruction(response_format: Any) -> str | None:
    if not isinstance(response_format, Mapping):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return JSON_OBJECT_INSTRUCTION
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema is None:
            return JSON_OBJECT_INSTRUCTION
        return (
            "Respond with a single valid JSON value that conforms to this JSON Schema, and nothing else: "
            "no prose, no markdown code fences.\n" + orjson.dumps(schema).decode()
        )
    return None


def _tool_to_anthropic(tool: Mapping[str, Any], param: str) -> dict[str, Any]:
    if tool.get("type", "function") != "function":
        raise TranslationError(f"tool type {tool.get('type')!r} is not supported by Anthropic", param=param)
    function = tool.get("function") or {}
    if not function.get("name"):
        raise TranslationError("tools need a function name", param=f"{param}.function.name")
    out: dict[str, Any] = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return _with_cache_control(out, tool)


def _tool_choice_to_anthropic(choice: Any) -> dict[str, Any]:
    if choice is None or choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if isinstance(name, str) and name:
            return {"type": "tool", "name": name}
    raise TranslationError(f"unsupported tool_choice {choice!r}", param="tool_choice")


def anthropic_response_to_openai(data: Mapping[str, Any], model: str) -> dict[str, Any]:
    """An Anthropic `message` -> an OpenAI `chat.completion`. Thinking blocks are dropped."""
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in data.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    finish = finish_reason_from_anthropic(data.get("stop_reason"), has_tool_calls=bool(tool_calls))
    return {
        "id": str(data.get("id") or f"chatcmpl-{uuid.uuid4().hex}"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": anthropic_usage_to_openai(data.get("usage")),
    }
