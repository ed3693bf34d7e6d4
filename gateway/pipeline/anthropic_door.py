"""Anthropic's door, POST /v1/messages, in front of any deployment: native bytes when the deployment
is Anthropic, translated to and from the OpenAI shape otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.errors import bad_request
from gateway.pipeline.anthropic_relay import relay_native, relay_translated
from gateway.pipeline.door import Completed, Finish, Opened, Parsed
from gateway.pipeline.outcome import Outcome
from gateway.pipeline.race import open_chat_stream, open_stream
from gateway.usage import StreamCounter
from gateway.validate import model_of, stream_flag
from providers.anthropic_translate import (
    TranslationError,
    anthropic_request_to_openai,
    openai_response_to_anthropic,
)
from providers.base import Endpoint, Provider, UpstreamCall


def _native(provider: Provider) -> bool:
    return hasattr(provider, "messages_stream")


def _check(body: dict[str, Any]) -> None:
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise bad_request("messages: must be a non-empty array", param="messages")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise bad_request("max_tokens: a positive integer is required", param="max_tokens")


def _count_anthropic(message: dict[str, Any]) -> int:
    counter = StreamCounter()
    for block in message.get("content") or ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            counter.parts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            counter.parts.append(str(block.get("name", "")) + orjson.dumps(block.get("input", {})).decode())
    return counter.tokens()


class AnthropicDoor:
    endpoint = "messages"
    anthropic = True
    stateful = False

    def parse(self, body: dict[str, Any]) -> Parsed:
        model = model_of(body)
        _check(body)
        stream = stream_flag(body)
        try:
            # Routing reads the OpenAI shape: the top-level `system` and content blocks count as they
            # would there.
            as_openai = anthropic_request_to_openai(body)
        except TranslationError as exc:
            raise bad_request(exc.message, param=exc.param) from None
        return Parsed(model, stream, body, as_openai)

    async def complete(self, provider: Provider, parsed: Parsed) -> Completed:
        if _native(provider):
            resp = await provider.messages(provider.deployment.upstream_body(parsed.body))  # type: ignore[attr-defined]
            data = resp.data
            return Completed(resp.body, resp.usage, lambda: _count_anthropic(data))
        call = UpstreamCall(provider.deployment.upstream_body(parsed.routing), Endpoint.CHAT)
        resp = await provider.complete(call)
        message = openai_response_to_anthropic(resp.data, parsed.model)
        return Completed(orjson.dumps(message), resp.usage, lambda: _count_anthropic(message))

    async def open(self, provider: Provider, parsed: Parsed) -> Opened:
        dep = provider.deployment
        if _native(provider):
            first, rest = await open_stream(provider.messages_stream(dep.upstream_body(parsed.body)))  # type: ignore[attr-defined]
            return Opened(first, rest, True)
        first, rest = await open_chat_stream(provider, parsed.routing)
        return Opened(first, rest, False)

    def relay(self, parsed: Parsed, opened: Opened, outcome: Outcome, finish: Finish) -> AsyncIterator[bytes]:
        relay = relay_native if opened.native else relay_translated
        return relay(opened.first, opened.rest, outcome, parsed.routing, parsed.model, finish)
