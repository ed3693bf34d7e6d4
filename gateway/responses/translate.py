"""A Responses request as a chat completion, and a chat answer as a Responses object: how the
Responses door reaches chat-only OpenAI-compatible servers, Anthropic, Gemini and the local engine.

Items the chat shape cannot say (reasoning items, whose content only their own model reads) are left
out; items it cannot carry at all (item references, built-in tools' calls, files) are refused with a
400 naming them, rather than dropped silently.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.errors import GatewayError, bad_request
from gateway.responses.ids import new_id
from providers.base import Usage

# What a chat body takes from a Responses body as it is.
_SAME = ("temperature", "top_p", "user", "stream")
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


class Untranslatable(GatewayError):
    """Something chat completions cannot carry: a 400 on a translated upstream, while OpenAI's own
    Responses API may still take it."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(400, message, param=param, code="unsupported_for_model")


def _text_of(parts: list[Any], where: str) -> str | list[dict[str, Any]]:
    """Content parts in the chat shape: one string when they are all text (every chat server takes
    that), a list of text and image parts otherwise."""
    out: list[dict[str, Any]] = []
    for j, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            out.append({"type": "text", "text": part["text"]})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            out.append({"type": "text", "text": part["refusal"]})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image: dict[str, Any] = {"url": part["image_url"]}
            if isinstance(part.get("detail"), str) and part["detail"] != "auto":
                image["detail"] = part["detail"]
            out.append({"type": "image_url", "image_url": image})
        else:
            raise Untranslatable(
                f"{where}[{j}]: content of type {kind!r} is not supported by this model's upstream"
                " (input_text, output_text and input_image with an image_url are)",
                f"{where}[{j}]",
            )
    if all(p["type"] == "text" for p in out):
        return "".join(p["text"] for p in out)
    return out


def _content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return _text_of(content, where)
    raise bad_request(f"{where} must be a string or an array of content parts", param=where)


def _output_text(output: Any, where: str) -> str:
    """A function_call_output's `output`: a string, or content parts of which the text is kept."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(p["text"] for p in output if isinstance(p, dict) and isinstance(p.get("text"), str))
    raise bad_request(f"{where}.output must be a string", param=f"{where}.output")


def items_to_messages(items: list[Any], refused: list[Untranslatable] | None = None) -> list[dict[str, Any]]:
    """Input items (and earlier responses' output items) as chat messages: function calls join the
    assistant message before them, as one chat turn holds text and tool calls together. An item chat
    cannot carry raises Untranslatable, or with `refused` is left out and noted there."""
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        try:
            _add(messages, item, f"input[{i}]")
        except Untranslatable as exc:
            if refused is None:
                raise
            refused.append(exc)
    return messages


def _add(messages: list[dict[str, Any]], item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise bad_request(f"{where} must be an object", param=where)
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise bad_request(f"{where}.role must be one of user, assistant, system, developer", param=where)
        messages.append({"role": _ROLES[role], "content": _content(item.get("content"), f"{where}.content")})
    elif kind == "function_call":
        call_id, name, args = item.get("call_id"), item.get("name"), item.get("arguments")
        if not (isinstance(call_id, str) and isinstance(name, str) and isinstance(args, str)):
            raise bad_request(f"{where}: a function_call needs call_id, name and arguments strings", where)
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        call_id = item.get("call_id")
        if not isinstance(call_id, str):
            raise bad_request(f"{where}.call_id must be a string", param=where)
        messages.append(
            {"role": "tool", "tool_call_id": call_id, "content": _output_text(item.get("output"), where)}
        )
    elif kind != "reasoning":  # reasoning: another model's, nothing a chat upstream can read
        raise Untranslatable(
            f"{where}: input items of type {kind!r} are not supported by this model's upstream", where
        )


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = {
        k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None
    }
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def _response_format(fmt: dict[str, Any]) -> dict[str, Any] | None:
    kind = fmt.get("type")
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    if kind == "json_object":
        return {"type": "json_object"}
    return None


def to_chat(
    body: dict[str, Any], items: list[Any], refused: list[Untranslatable] | None = None
) -> dict[str, Any]:
    """The chat completion body for a checked Responses `body` whose whole conversation is `items`
    (`refused` as for items_to_messages)."""
    messages = items_to_messages(items, refused)
    if isinstance(body.get("instructions"), str):
        messages.insert(0, {"role": "system", "content": body["instructions"]})
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    chat.update((k, body[k]) for k in _SAME if body.get(k) is not None)
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    tools = [_tool(t) for t in body.get("tools") or () if t.get("type") == "function"]
    if tools:
        # Chat servers refuse tool settings in a request without tools.
        chat["tools"] = tools
        if body.get("tool_choice") is not None:
            chat["tool_choice"] = _tool_choice(body["tool_choice"])
        if body.get("parallel_tool_calls") is not None:
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    fmt = (body.get("text") or {}).get("format")
    if isinstance(fmt, dict) and (response_format := _response_format(fmt)) is not None:
        chat["response_format"] = response_format
    effort = (body.get("reasoning") or {}).get("effort")
    if isinstance(effort, str):
        chat["reasoning_effort"] = effort
    return chat


# ---------------------------------------------------------------- the answer


def usage_of(usage: Usage, reasoning: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def reasoning_tokens(usage: Any) -> int:
    details = usage.get("completion_tokens_details") if isinstance(usage, dict) else None
    value = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return value if isinstance(value, int) and value >= 0 else 0


def message_item(text: str, status: str = "completed", item_id: str | None = None) -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id or new_id("msg"),
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def call_item(call_id: str, name: str, arguments: str, item_id: str | None = None) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id or new_id("fc"),
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": "completed",
    }


def output_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A chat answer's message as output items: its text, then its tool calls."""
    out: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, str) and content:
        out.append(message_item(content))
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        out.append(
            call_item(
                str(call.get("id") or new_id("call")),
                str(fn.get("name") or ""),
                str(fn.get("arguments") or ""),
            )
        )
    return out


def shell(body: dict[str, Any], response_id: str, model: str) -> dict[str, Any]:
    """A Response object for `body` with nothing in it yet: what `response.created` carries."""
    text = body.get("text") if isinstance(body.get("text"), dict) else {}
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature"),
        "text": {"format": text.get("format") or {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p"),
        "truncation": body.get("truncation") or "disabled",
        "usage": None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def finished(
    response: dict[str, Any], output: list[dict[str, Any]], finish: Any, usage: dict[str, Any] | None
) -> dict[str, Any]:
    """`response` once its answer is in: completed, or incomplete when the output cap cut it short."""
    cut = finish == "length"
    return {
        **response,
        "status": "incomplete" if cut else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "output": output,
        "usage": usage,
    }


def from_chat(chat: dict[str, Any], response: dict[str, Any], usage: Usage | None) -> dict[str, Any]:
    """A chat completion as the Responses object `response` (its shell) completed; no usage when
    the upstream gave none (the gateway counts it for billing, not for the client)."""
    choices = chat.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    output = output_of(message)
    reasoning = reasoning_tokens(chat.get("usage"))
    return finished(
        response, output, choice.get("finish_reason"), None if usage is None else usage_of(usage, reasoning)
    )
