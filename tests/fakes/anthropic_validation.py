"""Request validation for the fake Anthropic Messages API: what the real API rejects (unknown fields,
max_tokens, sampling ranges, system, tools and tool_choice, message roles and content blocks, images),
raised as `InvalidRequest` with an Anthropic-like message."""

from __future__ import annotations

import base64
import binascii
from typing import Any

_KNOWN_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "output_config",
        "cache_control",
        "context_management",
        "inference_geo",
    }
)
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


class InvalidRequest(Exception):
    """A body the real API answers 400 invalid_request_error; the message is the error's."""


def validate(body: dict[str, Any]) -> None:
    """Raise InvalidRequest with an Anthropic-like message for what the real API rejects."""
    for key in body:
        if key not in _KNOWN_FIELDS:
            raise InvalidRequest(f"{key}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequest("model: Field required")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise InvalidRequest("max_tokens: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidRequest("max_tokens: Input should be a valid integer greater than or equal to 1")
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None and not (isinstance(value, int | float) and 0 <= value <= 1):
            raise InvalidRequest(f"{key}: Input should be less than or equal to 1")
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
        raise InvalidRequest("stop_sequences: Input should be a valid list of strings")
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or set(metadata) - {"user_id"}):
        raise InvalidRequest("metadata: Extra inputs are not permitted")
    _validate_system(body.get("system"))
    tool_names = _validate_tools(body.get("tools"), body.get("tool_choice"))
    _validate_messages(body.get("messages"), tool_names)


def _validate_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise InvalidRequest("system: Input should be a valid string or list of text blocks")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not block.get("text"):
            raise InvalidRequest(f"system.{i}: system blocks must be non-empty text blocks")


def _validate_tools(tools: Any, choice: Any) -> set[str]:
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            raise InvalidRequest("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
                raise InvalidRequest(f"tools.{i}.name: Field required")
            if set(tool) - {"name", "description", "input_schema", "cache_control", "type"}:
                raise InvalidRequest(f"tools.{i}: Extra inputs are not permitted")
            schema = tool.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                raise InvalidRequest(f"tools.{i}.input_schema: input_schema must be a JSON Schema object")
            if tool["name"] in names:
                raise InvalidRequest("tools: Tool names must be unique.")
            names.add(tool["name"])
    if choice is not None:
        if not tools:
            raise InvalidRequest("tool_choice: tool_choice may only be specified while providing tools.")
        kind = choice.get("type") if isinstance(choice, dict) else None
        if kind not in ("auto", "any", "tool", "none"):
            raise InvalidRequest("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
        if kind == "tool" and choice.get("name") not in names:
            raise InvalidRequest(f"tool_choice.name: tool {choice.get('name')!r} not found in tools")
        if set(choice) - {"type", "name", "disable_parallel_tool_use"}:
            raise InvalidRequest("tool_choice: Extra inputs are not permitted")
    return names


def _validate_messages(messages: Any, tool_names: set[str]) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: at least one message is required")
    previous_role: str | None = None
    pending_tool_uses: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise InvalidRequest(f"messages.{i}: Extra inputs are not permitted")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise InvalidRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if previous_role is None and role != "user":
            raise InvalidRequest('messages: first message must use the "user" role')
        if role == previous_role:
            raise InvalidRequest(
                f'messages: roles must alternate between "user" and "assistant", '
                f'but found multiple "{role}" roles in a row'
            )
        content = message.get("content")
        is_last = i == len(messages) - 1
        if isinstance(content, str):
            if not content and not (role == "assistant" and is_last):
                raise InvalidRequest(f"messages.{i}: all messages must have non-empty content")
            blocks: list[Any] = []
        elif isinstance(content, list) and content:
            blocks = content
        else:
            raise InvalidRequest(f"messages.{i}: all messages must have non-empty content")

        results = [
            b.get("tool_use_id") for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"
        ]
        missing = [t for t in pending_tool_uses if t not in results]
        if missing:
            raise InvalidRequest(
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block "
                "in the next message."
            )
        seen_other = False
        for j, block in enumerate(blocks):
            where = f"messages.{i}.content.{j}"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "tool_result":
                if role != "user":
                    raise InvalidRequest(f"{where}: tool_result blocks are only allowed in user messages")
                if seen_other:
                    raise InvalidRequest(f"{where}: tool_result blocks must come before any other content")
                if block.get("tool_use_id") not in pending_tool_uses:
                    raise InvalidRequest(
                        f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                        "`tool_use` block in the previous message."
                    )
                _validate_tool_result_content(block.get("content"), where)
                continue
            seen_other = True
            _validate_block(block, kind, role, where, tool_names)
        pending_tool_uses = [
            b["id"]
            for b in blocks
            if role == "assistant" and isinstance(b, dict) and b.get("type") == "tool_use"
        ]
        previous_role = role


def _validate_block(block: Any, kind: str | None, role: str, where: str, tool_names: set[str]) -> None:
    if kind == "text":
        if not isinstance(block.get("text"), str) or not block["text"]:
            raise InvalidRequest(f"{where}: text content blocks must be non-empty")
    elif kind == "image":
        _validate_image(block.get("source"), where)
    elif kind == "document":
        source = block.get("source") or {}
        if source.get("type") not in ("base64", "text", "url") or not (
            source.get("data") or source.get("url")
        ):
            raise InvalidRequest(f"{where}.source: invalid document source")
    elif kind == "tool_use":
        if role != "assistant":
            raise InvalidRequest(f"{where}: tool_use blocks are only allowed in assistant messages")
        if not isinstance(block.get("id"), str) or not block["id"]:
            raise InvalidRequest(f"{where}.id: Field required")
        if not isinstance(block.get("name"), str) or not block["name"]:
            raise InvalidRequest(f"{where}.name: Field required")
        if not isinstance(block.get("input"), dict):
            raise InvalidRequest(f"{where}.input: Input should be a valid dictionary")
    elif kind in ("thinking", "redacted_thinking"):
        if role != "assistant":
            raise InvalidRequest(f"{where}: thinking blocks are only allowed in assistant messages")
    else:
        raise InvalidRequest(f"{where}.type: unknown content block type {kind!r}")


def _validate_tool_result_content(content: Any, where: str) -> None:
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content: Input should be a valid string or list")
    for k, inner in enumerate(content):
        kind = inner.get("type") if isinstance(inner, dict) else None
        if kind == "text":
            if not inner.get("text"):
                raise InvalidRequest(f"{where}.content.{k}: text content blocks must be non-empty")
        elif kind == "image":
            _validate_image(inner.get("source"), f"{where}.content.{k}")
        else:
            raise InvalidRequest(f"{where}.content.{k}.type: tool_result content must be text or image")


def _validate_image(source: Any, where: str) -> None:
    if not isinstance(source, dict):
        raise InvalidRequest(f"{where}.source: Field required")
    if source.get("type") == "base64":
        if not isinstance(source.get("media_type"), str) or source["media_type"] not in _IMAGE_TYPES:
            raise InvalidRequest(f"{where}.source.media_type: Input should be one of {sorted(_IMAGE_TYPES)}")
        try:
            base64.b64decode(str(source.get("data") or ""), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest(f"{where}.source.data: invalid base64 data") from exc
        if not source.get("data"):
            raise InvalidRequest(f"{where}.source.data: Field required")
    elif source.get("type") == "url":
        if not str(source.get("url") or "").startswith(("http://", "https://")):
            raise InvalidRequest(f"{where}.source.url: must be an http(s) URL")
    else:
        raise InvalidRequest(f"{where}.source.type: Input should be 'base64' or 'url'")
