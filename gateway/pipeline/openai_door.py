"""OpenAI's doors: chat completions, legacy completions and embeddings. Legacy completions reach a
deployment that serves only chat through gateway.legacy's translation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway import legacy
from gateway.pipeline.door import Completed, Finish, Opened, Parsed
from gateway.pipeline.outcome import Outcome
from gateway.pipeline.race import open_stream
from gateway.streaming import relay_openai
from gateway.usage import completion_tokens
from gateway.validate import check_openai, model_of, stream_flag
from providers.base import Endpoint, Provider, UpstreamCall, UpstreamResponse


class OpenAIDoor:
    anthropic = False
    stateful = False

    def __init__(self, endpoint: Endpoint) -> None:
        self.kind = endpoint
        self.endpoint = endpoint.value

    def parse(self, body: dict[str, Any]) -> Parsed:
        model = model_of(body)
        check_openai(body, self.kind)
        stream = self.kind is not Endpoint.EMBED and stream_flag(body)
        return Parsed(model, stream, body, body)

    async def complete(self, provider: Provider, parsed: Parsed) -> Completed:
        if self.kind is Endpoint.EMBED:
            body = {**parsed.body, "model": provider.deployment.model}
            resp = await provider.embed(UpstreamCall(body, Endpoint.EMBED))
            return Completed(resp.body, resp.usage, lambda: 0)
        upstream = provider.deployment.upstream_body(parsed.body)
        if self.kind is Endpoint.TEXT and not provider.native_text:
            chat = await provider.complete(UpstreamCall(legacy.to_chat(upstream), Endpoint.CHAT))
            resp = UpstreamResponse.from_data(legacy.from_chat(chat.data))
        else:
            resp = await provider.complete(UpstreamCall(upstream, self.kind))
        return Completed(resp.body, resp.usage, lambda: completion_tokens(resp.data))

    async def open(self, provider: Provider, parsed: Parsed) -> Opened:
        options = parsed.body.get("stream_options") or {}
        upstream = {
            **provider.deployment.upstream_body(parsed.body),
            "stream_options": {**options, "include_usage": True},
        }
        native = not (self.kind is Endpoint.TEXT and not provider.native_text)
        call = UpstreamCall(upstream, self.kind) if native else UpstreamCall(legacy.to_chat(upstream))
        first, rest = await open_stream(provider.stream(call))
        return Opened(first, rest, native)

    def relay(self, parsed: Parsed, opened: Opened, outcome: Outcome, finish: Finish) -> AsyncIterator[bytes]:
        options = parsed.body.get("stream_options") or {}
        return relay_openai(
            opened.first,
            opened.rest,
            outcome,
            parsed.body,
            include_usage=bool(options.get("include_usage")),
            convert=None if opened.native else legacy.chunk_from_chat,
            finish=finish,
        )
