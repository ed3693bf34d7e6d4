"""Fake Anthropic Messages API (`POST /v1/messages`, streamed and not) for tests.

Honours the fault convention in `tests.fakes` (fail-400/401/429/500, flaky-N-*, hang, die-midstream,
stall-midstream) and its deterministic answers ("Hello from anthropic!"; a call of the first tool, or
of the tool named by tool_choice, with {"city": "Paris"}; "The tool said: ..."). Anthropic-specific
behaviour on top:
  - requests are validated the way the real API does (x-api-key or Authorization: Bearer,
    anthropic-version here; in `anthropic_validation` max_tokens, unknown top-level fields, alternating
    roles starting with user, tool_result right after its tool_use and first in its turn, non-empty
    text, image sources, tools and tool_choice), answering 400 with Anthropic's error body, so
    translation bugs fail loudly;
  - JSON mode is prompted on Anthropic, so a system prompt mentioning "valid JSON" (or an
    `output_config.format`) gets '{"ok": true}';
  - stop_sequences found in the answer cut it there (stop_reason stop_sequence); max_tokens below 3
    truncates it (stop_reason max_tokens);
  - model ids starting with "cached" report cache_read_input_tokens 10 and cache_creation_input_tokens 5;
    otherwise a request with `cache_control` marks gets Anthropic's prompt-cache usage: the prefix up
    to the marks is written (cache_creation, by 5-minute and 1-hour lifetime) the first time and read
    (cache_read_input_tokens) by later requests that start with it (`_cache_usage`);
  - model id "overloaded-midstream" answers 200 and then sends `event: error` (overloaded_error) right
    after message_start, as Anthropic does under load; "overloaded-late" sends it after some content.

`create_app().state.requests` records every request received: {"headers": {...}, "body": {...}}.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.anthropic_validation import InvalidRequest, validate
from tests.fakes.echo_faults import ECHO_MIDSTREAM, ECHO_STATUS, echoed_credentials
from tests.fakes.partial_stream import PartialStream

TEXT_PIECES = ["Hello", " from", " anthropic!"]
TOOL_JSON_PIECES = ["", '{"city": ', '"Paris"}']

_FLAKY = re.compile(r"^flaky-(\d+)-")


def create_app() -> Starlette:
    app = Starlette(routes=[Route("/v1/messages", _messages, methods=["POST"])])
    app.state.requests = []
    app.state.calls = {}  # model id -> calls seen, for flaky-N-*
    app.state.cache = set()  # prompt-cache prefixes written (see _cache_usage)
    return app


def error_response(status: int, kind: str, message: str, request_id: str = "req_fake") -> Response:
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    headers = {"request-id": request_id}
    if status == 429:
        headers["retry-after"] = "0"
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


async def _messages(request: Request) -> Response:
    raw = await request.body()
    request_id = "req_" + hashlib.sha1(raw).hexdigest()[:24]
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    state = request.app.state
    state.requests.append({"headers": dict(request.headers), "body": body})
    # Newer official SDKs send the API key as "Authorization: Bearer"; the API takes either.
    bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not request.headers.get("x-api-key") and not bearer:
        return error_response(401, "authentication_error", "x-api-key header is required", request_id)
    if not request.headers.get("anthropic-version"):
        return error_response(
            400, "invalid_request_error", "anthropic-version: header is required", request_id
        )
    if not isinstance(body, dict):
        return error_response(400, "invalid_request_error", "request body must be a JSON object", request_id)

    model = str(body.get("model") or "")
    state.calls[model] = state.calls.get(model, 0) + 1
    fault = _fault(model, state.calls[model], request_id)
    if fault is not None:
        return fault
    if model in ECHO_STATUS:
        kind = "api_error" if ECHO_STATUS[model] >= 500 else "invalid_request_error"
        return error_response(ECHO_STATUS[model], kind, echoed_credentials(request.headers), request_id)
    if model == "hang":
        await asyncio.sleep(60)
    try:
        validate(body)
    except InvalidRequest as exc:
        return error_response(400, "invalid_request_error", str(exc), request_id)

    answer = _answer(body, request_id, state.cache)
    headers = {"request-id": request_id}
    if not body.get("stream"):
        return Response(orjson.dumps(_message(answer)), headers=headers, media_type="application/json")
    if model == "die-midstream":
        return PartialStream(_events(answer, die=True), headers, stall=False, gap_s=0.01)
    if model == "stall-midstream":
        return PartialStream(_events(answer, die=True), headers, stall=True)
    if model == ECHO_MIDSTREAM:
        failure = {
            "type": "error",
            "error": {"type": "api_error", "message": echoed_credentials(request.headers)},
        }
        events = [*_events(answer, overloaded="late")[:-1], _sse("error", failure)]
        return StreamingResponse(iter(events), headers=headers, media_type="text/event-stream")
    return StreamingResponse(_stream(answer, model), headers=headers, media_type="text/event-stream")


def _fault(model: str, calls: int, request_id: str) -> Response | None:
    if model == "fail-400":
        return error_response(400, "invalid_request_error", "fake: bad request", request_id)
    if model == "fail-401":
        return error_response(401, "authentication_error", "fake: invalid x-api-key", request_id)
    if model == "fail-429":
        return error_response(429, "rate_limit_error", "fake: rate limited", request_id)
    if model == "fail-500":
        return error_response(500, "api_error", "fake: internal server error", request_id)
    flaky = _FLAKY.match(model)
    if flaky and calls <= int(flaky.group(1)):
        return error_response(500, "api_error", f"fake: flaky failure {calls}", request_id)
    return None


# ---------------------------------------------------------------------------------------- answers


def _text_of(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    texts = []
    for block in content or []:
        if block.get("type") == "text":
            texts.append(block.get("text") or "")
        elif block.get("type") == "tool_result":
            texts += _text_of(block.get("content"))
    return texts


def _answer(body: dict[str, Any], request_id: str, cache: set[str]) -> dict[str, Any]:
    model = str(body["model"])
    system = body.get("system") or ""
    texts = _text_of(system)
    tool_results: list[str] = []
    for message in body["messages"]:
        texts += _text_of(message["content"])
        if isinstance(message["content"], list):
            for block in message["content"]:
                if block.get("type") == "tool_result":
                    tool_results.append(" ".join(_text_of(block.get("content"))))
    words = max(1, sum(len(t.split()) for t in texts))
    usage = {"input_tokens": words, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    if model.startswith("cached"):
        usage.update(cache_creation_input_tokens=5, cache_read_input_tokens=10)
    elif (cached := _cache_usage(body, cache)) is not None:
        read, by_ttl = cached
        written = sum(by_ttl.values())
        usage.update(
            input_tokens=words - read - written,
            cache_read_input_tokens=read,
            cache_creation_input_tokens=written,
            cache_creation=by_ttl,
        )
    answer: dict[str, Any] = {
        "id": "msg_" + request_id.removeprefix("req_"),
        "model": model,
        "usage": usage,
        "stop_sequence": None,
    }
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {"type": "auto"}
    if tools and choice.get("type") != "none" and not tool_results:
        name = choice.get("name") if choice.get("type") == "tool" else tools[0]["name"]
        answer.update(
            kind="tool_use", tool={"id": "toolu_" + request_id[4:28], "name": name}, stop_reason="tool_use"
        )
        return answer

    system_text = " ".join(_text_of(system))
    if tool_results:
        pieces = ["The tool said: ", tool_results[-1]]
    elif "valid json" in system_text.lower() or (body.get("output_config") or {}).get("format"):
        pieces = ['{"ok": ', "true", "}"]
    else:
        pieces = list(TEXT_PIECES)
    stop_reason = "end_turn"
    if body["max_tokens"] < len(pieces):
        pieces, stop_reason = pieces[: body["max_tokens"]], "max_tokens"
    full = "".join(pieces)
    for stop in body.get("stop_sequences") or []:
        if stop in full:
            full = full[: full.index(stop)]
            pieces, stop_reason = _split3(full), "stop_sequence"
            answer["stop_sequence"] = stop
            break
    answer.update(kind="text", pieces=pieces, stop_reason=stop_reason)
    return answer


def _cache_usage(body: dict[str, Any], cache: set[str]) -> tuple[int, dict[str, int]] | None:
    """Prompt caching as Anthropic does it, in this fake's tokens (words): the prompt (tools, system,
    messages, in that order) up to each block marked `cache_control` is a prefix. The longest prefix
    written before is read; the rest up to the last mark is written, each stretch at its mark's
    lifetime ("5m" unless `ttl` says "1h"). None when nothing is marked."""
    blocks: list[Any] = list(body.get("tools") or [])
    for part in (body.get("system"), *(m.get("content") for m in body["messages"])):
        blocks += [{"type": "text", "text": part}] if isinstance(part, str) else list(part or [])
    digest = hashlib.sha1()
    words = 0
    marks: list[tuple[int, str, str]] = []  # (words up to the mark, lifetime, prefix digest)
    for block in blocks:
        plain = {k: v for k, v in block.items() if k != "cache_control"}
        digest.update(orjson.dumps(plain, option=orjson.OPT_SORT_KEYS))
        words += sum(len(t.split()) for t in _text_of([block])) if "type" in block else 0
        if isinstance(mark := block.get("cache_control"), dict):
            marks.append((words, "1h" if mark.get("ttl") == "1h" else "5m", digest.hexdigest()))
    if not marks:
        return None
    hit = max((i for i, m in enumerate(marks) if m[2] in cache), default=-1)
    read = marks[hit][0] if hit >= 0 else 0
    by_ttl = {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}
    done = read
    for upto, ttl, key in marks[hit + 1 :]:
        by_ttl[f"ephemeral_{ttl}_input_tokens"] += upto - done
        done = upto
        cache.add(key)
    return read, by_ttl


def _split3(text: str) -> list[str]:
    third = max(1, len(text) // 3)
    return [p for p in (text[:third], text[third : 2 * third], text[2 * third :]) if p] or [""]


def _message(answer: dict[str, Any]) -> dict[str, Any]:
    if answer["kind"] == "tool_use":
        content = [{"type": "tool_use", **answer["tool"], "input": {"city": "Paris"}}]
    else:
        content = [{"type": "text", "text": "".join(answer["pieces"])}]
    return {
        "id": answer["id"],
        "type": "message",
        "role": "assistant",
        "model": answer["model"],
        "content": content,
        "stop_reason": answer["stop_reason"],
        "stop_sequence": answer["stop_sequence"],
        "usage": {**answer["usage"], "output_tokens": 3},
    }


# ---------------------------------------------------------------------------------------- streams


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


_PING = b'event: ping\ndata: {"type": "ping"}\n\n'  # byte for byte what Anthropic sends


def _events(answer: dict[str, Any], *, die: bool = False, overloaded: str | None = None) -> list[bytes]:
    start = {
        "id": answer["id"],
        "type": "message",
        "role": "assistant",
        "model": answer["model"],
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**answer["usage"], "output_tokens": 1},
    }
    events = [_sse("message_start", {"type": "message_start", "message": start})]
    overload = _sse(
        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    if overloaded == "early":
        return [*events, overload]
    if answer["kind"] == "tool_use":
        block = {"type": "tool_use", **answer["tool"], "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in TOOL_JSON_PIECES]
    else:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in answer["pieces"]]
    events.append(
        _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
    )
    events.append(_PING)
    for delta in deltas[:2] if die or overloaded else deltas:
        events.append(
            _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        )
    if die:
        return events
    if overloaded:
        return [*events, overload]
    events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
    final = {"stop_reason": answer["stop_reason"], "stop_sequence": answer["stop_sequence"]}
    events.append(
        _sse("message_delta", {"type": "message_delta", "delta": final, "usage": {"output_tokens": 3}})
    )
    events.append(_sse("message_stop", {"type": "message_stop"}))
    return events


async def _stream(answer: dict[str, Any], model: str) -> AsyncIterator[bytes]:
    overloaded = {"overloaded-midstream": "early", "overloaded-late": "late"}.get(model)
    for event in _events(answer, overloaded=overloaded):
        yield event
        await asyncio.sleep(0)
