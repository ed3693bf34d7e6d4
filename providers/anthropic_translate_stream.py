"""Streamed OpenAI <-> Anthropic translation, plus the stop-reason and usage mappings both directions share.

Pure: no I/O. Both request/response modules (`providers.anthropic_translate`,
`providers.anthropic_translate_upstream`) import from here, so this one depends on neither.

Usage semantics differ and must not be double-counted: Anthropic's `input_tokens` EXCLUDES cache reads
and cache writes (total input = input + cache_read + cache_creation), while OpenAI's `prompt_tokens`
includes cached tokens and reports them again, as a subset, in `prompt_tokens_details.cached_tokens`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from providers.base import token_count

# end_turn/stop_sequence/pause_turn are all "the model stopped on its own" for an OpenAI client;
# refusal is the closest thing Anthropic has to OpenAI's content filter.
STOP_REASON_TO_FINISH: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Which stop string matched is unknowable from an OpenAI answer, so "stop" is always end_turn.
FINISH_TO_STOP_REASON: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def finish_reason_from_anthropic(stop_reason: str | None, *, has_tool_calls: bool = False) -> str:
    if stop_reason is None:
        return "tool_calls" if has_tool_calls else "stop"
    return STOP_REASON_TO_FINISH.get(stop_reason, "stop")


def stop_reason_from_openai(finish_reason: str | None, *, has_tool_calls: bool = False) -> str:
    # Some OpenAI-compatible servers answer tool calls with finish_reason "stop"; an Anthropic client
    # only runs its tool loop on "tool_use", so the presence of calls wins.
    if has_tool_calls and finish_reason in (None, "stop", "tool_calls", "function_call"):
        return "tool_use"
    return FINISH_TO_STOP_REASON.get(finish_reason or "stop", "end_turn")


def anthropic_usage_to_openai(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """Anthropic usage -> OpenAI usage. Cache writes are prompt tokens too; they are also reported under
    the (non-OpenAI, LiteLLM-style) key `cache_creation_input_tokens` so accounting can price them."""
    u = usage if isinstance(usage, Mapping) else {}
    counts = [
        token_count(u.get(k))
        for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens")
    ]
    if None in counts:
        return {}  # not token counts: no usage, so the gateway counts the tokens itself
    fresh, read, written, completion = counts
    prompt = fresh + read + written
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read},
    }
    if written:
        out["cache_creation_input_tokens"] = written
        if (by_ttl := _cache_creation(u.get("cache_creation"))) is not None:
            out["cache_creation"] = by_ttl
    return out


def _cache_creation(value: Any) -> dict[str, int] | None:
    """Anthropic's cache writes by lifetime, when they are token counts."""
    if not isinstance(value, Mapping):
        return None
    counts = {k: token_count(value.get(k)) for k in _CACHE_TTL_KEYS}
    if any(n is None for n in counts.values()):
        return None
    return counts  # type: ignore[return-value]


_CACHE_TTL_KEYS = ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")


def openai_usage_to_anthropic(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """The inverse of `anthropic_usage_to_openai` (exact round trip)."""
    u = usage if isinstance(usage, Mapping) else {}
    details = u.get("prompt_tokens_details")
    read = (token_count(details.get("cached_tokens")) if isinstance(details, Mapping) else 0) or 0
    written = token_count(u.get("cache_creation_input_tokens")) or 0
    prompt = token_count(u.get("prompt_tokens")) or 0
    out: dict[str, Any] = {
        "input_tokens": max(prompt - read - written, 0),
        "output_tokens": token_count(u.get("completion_tokens")) or 0,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
    }
    if written and (by_ttl := _cache_creation(u.get("cache_creation"))) is not None:
        out["cache_creation"] = by_ttl
    return out


# HTTP status each Anthropic error type is sent with (also used for `event: error` inside a stream).
ANTHROPIC_ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_STATUS_ERROR_TYPE = {status: kind for kind, status in ANTHROPIC_ERROR_STATUS.items()}


def anthropic_error_body(status: int, message: str, error_type: str | None = None) -> dict[str, Any]:
    """Anthropic's error document, `{"type": "error", "error": {"type", "message"}}`, for answering
    `/v1/messages` clients (as the body, or as the data of an `event: error` in a stream). An
    `error_type` that is not an Anthropic one is replaced by the type the status stands for."""
    if error_type not in ANTHROPIC_ERROR_STATUS:
        fallback = "api_error" if status >= 500 else "invalid_request_error"
        error_type = _STATUS_ERROR_TYPE.get(status, fallback)
    return {"type": "error", "error": {"type": error_type, "message": message}}


def sse_event(name: str, data: Mapping[str, Any]) -> bytes:
    """One event framed exactly as Anthropic frames it."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def merge_anthropic_usage(into: dict[str, Any], usage: Mapping[str, Any] | None) -> None:
    """Anthropic's stream counts are cumulative totals: later integer values overwrite earlier ones."""
    for key, value in (usage or {}).items():
        if isinstance(value, int) and not isinstance(value, bool):
            into[key] = value
        elif key == "cache_creation" and isinstance(value, Mapping):
            into[key] = dict(value)


class AnthropicStreamToOpenAI:
    """Anthropic stream events (parsed `data` dicts, in order) -> OpenAI `chat.completion.chunk` dicts.

    `ping`, `error` and unknown event types produce nothing: the caller turns `error` into its own
    failure. Thinking and citation deltas are dropped (OpenAI chat has no place for them)."""

    def __init__(self, model: str, *, created: int | None = None) -> None:
        self.model = model
        self.created = int(time.time()) if created is None else created
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        # Anthropic reports usage cumulatively: message_start has the input side, message_delta
        # overwrites with totals, so a plain overwrite of non-null fields is right.
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.done = False
        self._tool_index: dict[int, int] = {}  # Anthropic content block index -> OpenAI tool_calls index
        self._finish_sent = False

    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            if message.get("id"):
                self.id = str(message["id"])
            merge_anthropic_usage(self.usage, message.get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_delta":
            return self._block_delta(event)
        if kind == "message_delta":
            merge_anthropic_usage(self.usage, event.get("usage"))
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason:
                self.stop_reason = reason
                return self._finish_chunks()
            return []
        if kind == "message_stop":
            self.done = True
            return [*self._finish_chunks(), self.usage_chunk()]
        return []

    def usage_chunk(self) -> dict[str, Any]:
        return {**self._envelope(), "choices": [], "usage": anthropic_usage_to_openai(self.usage)}

    def _block_start(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        block = event.get("content_block") or {}
        if block.get("type") == "tool_use":
            position = len(self._tool_index)
            self._tool_index[int(event.get("index", 0))] = position
            # Anthropic always starts tool input as {} and streams it; a non-empty start is sent whole.
            initial = block.get("input")
            arguments = orjson.dumps(initial).decode() if initial else ""
            call = {
                "index": position,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": arguments},
            }
            return [self._chunk({"tool_calls": [call]})]
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        return []

    def _block_delta(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if kind == "input_json_delta" and delta.get("partial_json"):
            position = self._tool_index.get(int(event.get("index", 0)))
            if position is None:
                return []
            piece = {"index": position, "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [piece]})]
        return []

    def _finish_chunks(self) -> list[dict[str, Any]]:
        if self._finish_sent:
            return []
        self._finish_sent = True
        reason = finish_reason_from_anthropic(self.stop_reason, has_tool_calls=bool(self._tool_index))
        return [self._chunk({}, finish_reason=reason)]

    def _envelope(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**self._envelope(), "choices": [choice]}


class OpenAIStreamToAnthropic:
    """OpenAI `chat.completion.chunk` dicts -> Anthropic SSE event bytes, for `/v1/messages` served by an
    OpenAI-shaped deployment. Call `feed` per chunk and `finish` once at the end of the stream.

    The upstream's final usage may arrive in a usage-only chunk after the finish chunk, or not at all,
    so the closing `message_delta` (which carries usage) is only written by `finish`. `message_start`
    reports input_tokens 0 unless the first chunk already carries usage; the true figures are in
    `message_delta`, whose usage counts are cumulative totals that clients let overwrite the start's."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = f"msg_{uuid.uuid4().hex[:24]}"
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self._started = False
        self._finished = False
        self._open: int | None = None  # index of the open content block
        self._open_kind: str | None = None
        self._next_index = 0
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool_calls index -> Anthropic block index

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        if self._finished:
            return []
        out: list[bytes] = []
        if chunk.get("usage"):
            self.usage = dict(chunk["usage"])
        if not self._started:
            out.append(self._message_start(chunk))
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:  # n > 1 has no Anthropic equivalent; keep the first choice
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                if self._open_kind != "text":
                    out += self._close_block()
                    out.append(self._open_block({"type": "text", "text": ""}, "text"))
                out.append(self._delta({"type": "text_delta", "text": text}, self._open))
            for call in delta.get("tool_calls") or []:
                out += self._tool_call_delta(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def finish(self) -> list[bytes]:
        if self._finished:
            return []
        out: list[bytes] = []
        if not self._started:
            out.append(self._message_start({}))
        out += self._close_block()
        self._finished = True
        stop_reason = stop_reason_from_openai(self.finish_reason, has_tool_calls=bool(self._tool_blocks))
        usage: dict[str, Any] = {"output_tokens": 0}
        if self.usage:
            usage = openai_usage_to_anthropic(self.usage)
        out.append(
            sse_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": usage,
                },
            )
        )
        out.append(sse_event("message_stop", {"type": "message_stop"}))
        return out

    def _message_start(self, chunk: Mapping[str, Any]) -> bytes:
        self._started = True
        upstream_id = str(chunk.get("id") or "")
        if upstream_id:
            self.id = "msg_" + upstream_id.removeprefix("chatcmpl-")
        usage = openai_usage_to_anthropic(self.usage) if self.usage else {"input_tokens": 0}
        message = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 0},
        }
        return sse_event("message_start", {"type": "message_start", "message": message})

    def _tool_call_delta(self, call: Mapping[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        position = int(call.get("index", 0))
        function = call.get("function") or {}
        if position not in self._tool_blocks:
            out += self._close_block()
            block = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": function.get("name") or "",
                "input": {},
            }
            out.append(self._open_block(block, "tool"))
            self._tool_blocks[position] = self._next_index - 1
        arguments = function.get("arguments")
        if arguments:
            # OpenAI streams parallel calls one after another, so this is the open block; if a server
            # interleaves them, the event's index still lets clients place the piece correctly.
            out.append(
                self._delta(
                    {"type": "input_json_delta", "partial_json": arguments}, self._tool_blocks[position]
                )
            )
        return out

    def _open_block(self, block: dict[str, Any], kind: str) -> bytes:
        index = self._next_index
        self._next_index += 1
        self._open, self._open_kind = index, kind
        return sse_event(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
        )

    def _close_block(self) -> list[bytes]:
        if self._open is None:
            return []
        index, self._open, self._open_kind = self._open, None, None
        return [sse_event("content_block_stop", {"type": "content_block_stop", "index": index})]

    @staticmethod
    def _delta(delta: dict[str, Any], index: int | None) -> bytes:
        return sse_event(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        )
