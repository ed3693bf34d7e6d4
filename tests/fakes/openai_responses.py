"""`POST /v1/responses` for the fake OpenAI upstream, on the real wire format: a Response object, or
its typed SSE events when streamed (`event: <type>` and `data:` with a `sequence_number`).

It answers like the fake's chat endpoint (`tests.fakes`): the greeting; a call of the first function
tool with {"city": "Paris"} while no function_call_output is in the input; "The tool said: <output>"
once one is; '{"ok": true}' under a JSON text format. input_tokens = words of the instructions and
input text (at least 1), output_tokens = 3. It keeps nothing, so a `previous_response_id` is a 400 as
OpenAI answers one it does not know, and built-in tools are answered as plain text: enough for the
gateway's pass-through, which resolves chains itself.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tests.fakes.openai_faults import dying_body, inject_fault
from tests.fakes.openai_validation import require_model
from tests.fakes.openai_wire import ApiError, content_text, iterate_frames, json_response, split3, word_count
from tests.fakes.responses_faults import FAULTS, faulty

OUTPUT_TOKENS = 3


def _input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    value = body.get("input")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list) or not all(isinstance(i, dict) for i in value):
        raise ApiError(400, "Invalid type for 'input': expected a string or an array.", param="input")
    return value


def _answer(body: dict[str, Any], items: list[dict[str, Any]], greeting: str) -> dict[str, Any]:
    tools = [t for t in body.get("tools") or () if t.get("type") == "function"]
    outputs = [i for i in items if i.get("type") == "function_call_output"]
    if outputs:
        return {"content": f"The tool said: {content_text(outputs[-1].get('output'))}"}
    if tools and body.get("tool_choice") != "none":
        return {"tool": (tools[0]["name"], '{"city": "Paris"}')}
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        return {"content": '{"ok": true}'}
    return {"content": greeting}


def _prompt_tokens(body: dict[str, Any], items: list[dict[str, Any]]) -> int:
    texts = [str(body.get("instructions") or "")]
    texts += [content_text(i.get("content")) for i in items if i.get("type", "message") == "message"]
    return max(1, sum(word_count(t) for t in texts))


async def responses(request: Request, fake: Any, greeting: str) -> Response:
    """The handler; `fake` is the OpenAI fake (its recording body reader, ids and fault state)."""
    try:
        body = await fake._read(request)
        model = require_model(body)
        items = _input_items(body)
        if body.get("previous_response_id") is not None:
            raise ApiError(
                400,
                f"Previous response with id '{body['previous_response_id']}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        failure = await inject_fault(model, request, fake.flaky_counts, fake.hang_seconds)
    except ApiError as e:
        return e.response()
    answer = _answer(body, items, greeting)
    rid, mid = fake.next_id("resp"), fake.next_id("msg")
    cap = body.get("max_output_tokens")
    pieces = split3(answer.get("content", ""))
    cut = "content" in answer and isinstance(cap, int) and cap < len(pieces)
    if cut:
        pieces = pieces[:cap]
    usage = {
        "input_tokens": _prompt_tokens(body, items),
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": len(pieces) if cut else OUTPUT_TOKENS,
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
    if "content" in answer:
        text = "".join(pieces)
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item: dict[str, Any] = {
            "type": "message",
            "id": mid,
            "status": "completed",
            "role": "assistant",
            "content": [part],
        }
    else:
        name, args = answer["tool"]
        item = {
            "type": "function_call",
            "id": "fc" + mid[3:],
            "call_id": "call" + mid[3:],
            "name": name,
            "arguments": args,
            "status": "completed",
        }
    response = {
        "id": rid,
        "object": "response",
        "created_at": 1_700_000_000,
        "status": "incomplete" if cut else "completed",
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": cap,
        "model": model,
        "output": [item],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": body.get("metadata") or {},
    }
    if not body.get("stream"):
        return faulty(model, response, None) if model in FAULTS else json_response(response)
    frames = _frames(response, item, pieces)
    if model in FAULTS:
        return faulty(model, response, frames)
    if failure == "die":
        return StreamingResponse(dying_body(b"".join(frames[:5])), media_type="text/event-stream")
    return StreamingResponse(iterate_frames(frames), media_type="text/event-stream")


def _frames(response: dict[str, Any], item: dict[str, Any], pieces: list[str]) -> list[bytes]:
    frames: list[bytes] = []

    def event(data: dict[str, Any]) -> None:
        data["sequence_number"] = len(frames)
        frames.append(f"event: {data['type']}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n")

    pending = {**response, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    event({"type": "response.created", "response": pending})
    event({"type": "response.in_progress", "response": pending})
    at = {"output_index": 0, "item_id": item["id"]}
    if item["type"] == "message":
        event(
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**item, "status": "in_progress", "content": []},
            }
        )
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        event({"type": "response.content_part.added", **at, "content_index": 0, "part": empty})
        for piece in pieces:
            event(
                {
                    "type": "response.output_text.delta",
                    **at,
                    "content_index": 0,
                    "delta": piece,
                    "logprobs": [],
                }
            )
        text = "".join(pieces)
        event({"type": "response.output_text.done", **at, "content_index": 0, "text": text, "logprobs": []})
        event({"type": "response.content_part.done", **at, "content_index": 0, "part": item["content"][0]})
    else:
        event(
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**item, "arguments": "", "status": "in_progress"},
            }
        )
        for piece in split3(item["arguments"]):
            event({"type": "response.function_call_arguments.delta", **at, "delta": piece})
        event(
            {
                "type": "response.function_call_arguments.done",
                **at,
                "name": item["name"],
                "arguments": item["arguments"],
            }
        )
    event({"type": "response.output_item.done", "output_index": 0, "item": item})
    kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
    event({"type": kind, "response": response})
    return frames
