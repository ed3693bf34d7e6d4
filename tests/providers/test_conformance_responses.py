"""The conformance suite, the Responses API: every adapter of `conformance_matrix` serves a Responses
request through the gateway's translation (request -> chat, answer -> output items, chunks -> typed
events), and the results are what the openai SDK's own types accept; an OpenAI deployment's native
/v1/responses passes through with its usage."""

from __future__ import annotations

import json
from typing import Any

import orjson
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.responses.stream import ChatToEvents
from gateway.responses.translate import from_chat, shell, to_chat
from providers.base import Chunk, UpstreamCall, Usage
from providers.openai_compatible import OpenAICompatibleProvider
from tests.fakes.server import ServerThread
from tests.providers import conformance_matrix as matrix
from tests.providers.conformance_matrix import WEATHER_TOOL, MakeProvider, collect

adapter = matrix.adapter
make = matrix.make
_known_failures = matrix._known_failures

EVENT = TypeAdapter(ResponseStreamEvent)
TOOL = {"type": "function", **WEATHER_TOOL["function"]}


def _request(model: str, **extra: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    body = {"model": model, "input": "Say hello to me", "instructions": "Be brief.", **extra}
    return body, [{"type": "message", "role": "user", "content": body["input"]}]


def _events(frames: list[bytes]) -> list[Any]:
    out = []
    for frame in frames:
        head, data = frame.split(b"\ndata: ", 1)
        event = EVENT.validate_python(orjson.loads(data))
        assert head == b"event: " + event.type.encode()
        out.append(event)
    return out


async def test_responses_complete(make: MakeProvider) -> None:
    provider = make()
    body, items = _request(provider.deployment.model)
    resp = await provider.complete(UpstreamCall(to_chat(body, items)))
    doc = Response.model_validate(from_chat(resp.data, shell(body, "resp_1", "m"), resp.usage))
    assert doc.status == "completed" and doc.output_text.startswith("Hello from ")
    assert doc.usage is not None and doc.usage.output_tokens == 3 and doc.usage.input_tokens > 0


def test_translated_usage_tells_cache_reads_and_writes() -> None:
    """The usage a translated answer reports carries the cache writes its record bills (both lives)."""
    body, _ = _request("m")
    message = {"role": "assistant", "content": "Hi"}
    chat = {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    usage = Usage(20, 3, cached_tokens=5, cache_write_5m_tokens=4, cache_write_1h_tokens=7)
    doc = from_chat(chat, shell(body, "resp_1", "m"), usage)
    assert doc["usage"]["input_tokens_details"] == {"cached_tokens": 5, "cache_write_tokens": 11}
    assert Response.model_validate(doc).usage.input_tokens == 20


async def test_responses_tool_round_trip(make: MakeProvider) -> None:
    provider = make()
    body, items = _request(provider.deployment.model, tools=[TOOL])
    resp = await provider.complete(UpstreamCall(to_chat(body, items)))
    first = Response.model_validate(from_chat(resp.data, shell(body, "resp_1", "m"), resp.usage))
    (call,) = first.output
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}
    follow = [
        *items,
        call.model_dump(),
        {"type": "function_call_output", "call_id": call.call_id, "output": "22C"},
    ]
    resp = await provider.complete(UpstreamCall(to_chat(body, follow)))
    doc = Response.model_validate(from_chat(resp.data, shell(body, "resp_2", "m"), resp.usage))
    assert doc.output_text == "The tool said: 22C"


async def test_responses_stream_events(make: MakeProvider) -> None:
    provider = make()
    body, items = _request(provider.deployment.model)
    chat = {**to_chat(body, items), "stream": True, "stream_options": {"include_usage": True}}
    chunks: list[Chunk] = await collect(provider.stream(UpstreamCall(chat)))
    converter = ChatToEvents(shell(body, "resp_1", "m"))
    frames = converter.start()
    usage: Usage | None = None
    for chunk in chunks:
        usage = Usage.from_openai(chunk.data.get("usage")) or usage
        frames += converter.feed(chunk.data)
    assert usage is not None
    events = _events(frames + converter.finish(usage))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert events[-1].type == "response.completed" and events[-1].response.output_text == text
    assert text.startswith("Hello from ")


async def test_native_responses(openai_upstream: ServerThread) -> None:
    provider = OpenAICompatibleProvider(
        matrix.Deployment(
            name="native",
            provider="openai",
            model="gpt-4o-mini",
            api_base=openai_upstream.url + "/v1",
            api_key="sk-test",
        )
    )
    try:
        body = {"model": "gpt-4o-mini", "input": "Say hello to me"}
        resp = await provider.responses(body)
        assert Response.model_validate(resp.data).output_text == "Hello from openai!"
        assert resp.usage == Usage(4, 3, 0) and orjson.loads(resp.body) == resp.data
        chunks = await collect(provider.responses_stream(body))
        events = _events([c.raw.removesuffix(b"\n\n") for c in chunks])
        assert events[-1].type == "response.completed"
        assert Usage.from_responses(chunks[-1].data["response"]["usage"]) == Usage(4, 3, 0)
        err = await matrix.raises_upstream(provider.responses({**body, "model": "fail-429"}))
        assert (err.status, err.retryable) == (429, True)
    finally:
        await provider.aclose()
