"""The Responses API's typed stream events: made from chat completion chunks for a translated
upstream (`ChatToEvents`), and framed for the client from an OpenAI upstream's own."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.responses.ids import new_id
from gateway.responses.translate import call_item, finished, message_item, reasoning_tokens, usage_of
from providers.base import UpstreamError, Usage

# The events whose `response` the gateway rewrites on a pass-through stream (`echoed`).
RESPONSE_EVENTS = frozenset(
    {
        "response.created",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)


def sse(data: dict[str, Any]) -> bytes:
    return b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def failed_events(response: dict[str, Any], exc: UpstreamError, sequence: int) -> list[bytes]:
    """How a stream that broke ends: an `error` event, then `response.failed` for clients that wait
    on the response's own status."""
    code = exc.code or ("rate_limit_exceeded" if exc.status == 429 else "server_error")
    error = {
        "type": "error",
        "code": code,
        "message": exc.message,
        "param": exc.param,
        "sequence_number": sequence,
    }
    failed = {**response, "status": "failed", "error": {"code": code, "message": exc.message}}
    return [sse(error), sse({"type": "response.failed", "response": failed, "sequence_number": sequence + 1})]


class _Call:
    __slots__ = ("arguments", "call_id", "item_id", "name", "output_index")

    def __init__(self, call_id: str, name: str, output_index: int) -> None:
        self.item_id = new_id("fc")
        self.call_id = call_id
        self.name = name
        self.arguments: list[str] = []
        self.output_index = output_index


class ChatToEvents:
    """Chat completion chunks in, Responses events out. The text comes first as one message item;
    each tool call is a function_call item after it. `response` is the finished object."""

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.text: list[str] | None = None
        self.text_id = new_id("msg")
        self.text_index = 0
        self.calls: dict[int, _Call] = {}
        self.finish_reason: Any = None
        self.reasoning = 0

    def _event(self, data: dict[str, Any]) -> bytes:
        data["sequence_number"] = self.sequence
        self.sequence += 1
        return sse(data)

    def start(self) -> list[bytes]:
        return [
            self._event({"type": "response.created", "response": self.response}),
            self._event({"type": "response.in_progress", "response": self.response}),
        ]

    def _part(self, text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def _text(self, delta: str) -> list[bytes]:
        out: list[bytes] = []
        if self.text is None:
            self.text, self.text_index = [], len(self.output)
            item = message_item("", "in_progress", self.text_id)
            item["content"] = []
            self.output.append(item)
            where = {"item_id": self.text_id, "output_index": self.text_index}
            out.append(
                self._event(
                    {"type": "response.output_item.added", "output_index": self.text_index, "item": item}
                )
            )
            out.append(
                self._event(
                    {
                        "type": "response.content_part.added",
                        **where,
                        "content_index": 0,
                        "part": self._part(""),
                    }
                )
            )
        self.text.append(delta)
        where = {"item_id": self.text_id, "output_index": self.text_index, "content_index": 0}
        out.append(
            self._event({"type": "response.output_text.delta", **where, "delta": delta, "logprobs": []})
        )
        return out

    def _close_text(self) -> list[bytes]:
        if self.text is None or self.output[self.text_index].get("status") == "completed":
            return []
        text = "".join(self.text)
        item = message_item(text, "completed", self.text_id)
        self.output[self.text_index] = item
        where = {"item_id": self.text_id, "output_index": self.text_index, "content_index": 0}
        return [
            self._event({"type": "response.output_text.done", **where, "text": text, "logprobs": []}),
            self._event({"type": "response.content_part.done", **where, "part": self._part(text)}),
            self._event({"type": "response.output_item.done", "output_index": self.text_index, "item": item}),
        ]

    def _tool(self, tc: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        fn = tc.get("function") or {}
        index = tc.get("index", 0)
        call = self.calls.get(index)
        if call is None:
            out += self._close_text()
            call = _Call(str(tc.get("id") or new_id("call")), str(fn.get("name") or ""), len(self.output))
            self.calls[index] = call
            item = {**call_item(call.call_id, call.name, "", call.item_id), "status": "in_progress"}
            self.output.append(item)
            out.append(
                self._event(
                    {"type": "response.output_item.added", "output_index": call.output_index, "item": item}
                )
            )
        if fn.get("arguments"):
            call.arguments.append(fn["arguments"])
            out.append(
                self._event(
                    {
                        "type": "response.function_call_arguments.delta",
                        "item_id": call.item_id,
                        "output_index": call.output_index,
                        "delta": fn["arguments"],
                    }
                )
            )
        return out

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        if isinstance(chunk.get("usage"), dict):
            self.reasoning = reasoning_tokens(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str) and delta["content"]:
                out += self._text(delta["content"])
            for tc in delta.get("tool_calls") or ():
                if isinstance(tc, dict):
                    out += self._tool(tc)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def finish(self, usage: Usage) -> list[bytes]:
        out = self._close_text()
        for call in self.calls.values():
            arguments = "".join(call.arguments)
            item = call_item(call.call_id, call.name, arguments, call.item_id)
            self.output[call.output_index] = item
            where = {"item_id": call.item_id, "output_index": call.output_index}
            out.append(
                self._event(
                    {
                        "type": "response.function_call_arguments.done",
                        **where,
                        "name": call.name,
                        "arguments": arguments,
                    }
                )
            )
            out.append(
                self._event(
                    {"type": "response.output_item.done", "output_index": call.output_index, "item": item}
                )
            )
        self.response = finished(
            self.response, self.output, self.finish_reason, usage_of(usage, self.reasoning)
        )
        kind = "response.incomplete" if self.response["status"] == "incomplete" else "response.completed"
        out.append(self._event({"type": kind, "response": self.response}))
        return out

    def failed(self, exc: UpstreamError) -> list[bytes]:
        return failed_events({**self.response, "output": self.output}, exc, self.sequence)
