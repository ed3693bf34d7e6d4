"""The Responses door, POST /v1/responses, in front of any deployment: OpenAI's own Responses API
as it answers, every other upstream through chat completions. One per request: it holds the
conversation its `previous_response_id` names and the response's id, for the store.

The gateway keeps the chain itself (OpenAI is sent the whole conversation with `store: false`): a
follow-up may be served by another deployment or provider than the turn before, and a key reads
only the responses it made, which an upstream shared by every key could not tell apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson

from gateway.auth_store import Principal
from gateway.dispatch import Skip
from gateway.errors import GatewayError
from gateway.pipeline.door import Completed, Finish, Opened, Parsed
from gateway.pipeline.outcome import Outcome
from gateway.pipeline.race import open_chat_stream, open_stream
from gateway.responses.ids import new_id
from gateway.responses.parse import builtin_tools, check
from gateway.responses.relay import relay_native, relay_translated
from gateway.responses.store import ResponseStore, owner_of
from gateway.responses.stream import ChatToEvents
from gateway.responses.translate import Untranslatable, from_chat, shell, to_chat
from gateway.usage import StreamCounter, completion_tokens
from gateway.validate import model_of, stream_flag
from providers.base import Endpoint, Provider, UpstreamCall, UpstreamError

# What a Responses body carries that OpenAI is not sent: the gateway resolves the chain itself.
_LOCAL_FIELDS = ("previous_response_id", "store", "stream")


def _native(provider: Provider) -> bool:
    return getattr(provider, "responses_url", None) is not None


def _output_tokens(response: dict[str, Any]) -> int:
    """The output's token count, for an upstream answer that came without usage."""
    counter = StreamCounter()
    for item in response.get("output") or ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call":
            counter.parts.append(f"{item.get('name') or ''}{item.get('arguments') or ''}")
        for part in item.get("content") or ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                counter.parts.append(part["text"])
    return counter.tokens()


class ResponsesDoor:
    endpoint = "responses"
    anthropic = False
    # The pipeline awaits `load` after `parse`: the chain is read from the database.
    stateful = True

    def __init__(self, store: ResponseStore, principal: Principal) -> None:
        self.store = store
        self.owner = owner_of(principal)
        self.items: list[dict[str, Any]] = []
        self.context: list[Any] = []
        self.response: dict[str, Any] = {}
        # Why a chat upstream cannot serve this request (built-in tools, items chat has no words
        # for); OpenAI's own Responses API still may.
        self.untranslatable: GatewayError | None = None

    def parse(self, body: dict[str, Any]) -> Parsed:
        model = model_of(body)
        self.items = check(body)
        return Parsed(model, stream_flag(body), body, body)

    async def load(self, parsed: Parsed) -> Parsed:
        """The request with its whole conversation: its OpenAI-shaped body (routing, limits, every
        translated upstream) holds the earlier turns too."""
        body = parsed.body
        previous = body.get("previous_response_id")
        history = (await self.store.get(self.owner, previous)).history() if previous else []
        self.context = [*history, *self.items]
        self.response = shell(body, new_id("resp"), parsed.model)
        builtin = builtin_tools(body)
        if builtin:
            self.untranslatable = GatewayError(
                400,
                f"built-in tools ({', '.join(sorted(set(builtin)))}) run only on OpenAI's Responses API;"
                f" `{parsed.model}` is served through chat completions, which takes function tools only",
                param="tools",
                code="unsupported_tool",
            )
        refused: list[Untranslatable] = []
        routing = to_chat(body, self.context, refused)
        if refused and self.untranslatable is None:
            self.untranslatable = refused[0]
        return replace(parsed, routing=routing)

    # -- helpers ------------------------------------------------------------------------------
    def _native_body(self, provider: Provider, parsed: Parsed) -> dict[str, Any]:
        upstream = {k: v for k, v in parsed.body.items() if k not in _LOCAL_FIELDS}
        # Reasoning items go back only with their encrypted content: with store false OpenAI has
        # no copy to look them up by id.
        upstream["input"] = [
            item
            for item in self.context
            if not (
                isinstance(item, dict)
                and item.get("type") == "reasoning"
                and not item.get("encrypted_content")
            )
        ]
        upstream["model"] = provider.deployment.model
        upstream["store"] = False
        return upstream

    def _echo(self, response: dict[str, Any]) -> dict[str, Any]:
        body = dict(response)
        body["previous_response_id"] = self.response["previous_response_id"]
        body["store"] = self.response["store"]
        return body

    async def _keep(self, response: dict[str, Any]) -> None:
        if self.response["store"]:
            await self.store.save(self.owner, response, self.context)

    def _translatable(self) -> None:
        if self.untranslatable is not None:
            e = self.untranslatable
            raise Skip(UpstreamError(e.status, e.message, type=e.type, code=e.code, param=e.param))

    # -- the door -----------------------------------------------------------------------------
    async def complete(self, provider: Provider, parsed: Parsed) -> Completed:
        if _native(provider):
            resp = await provider.responses(self._native_body(provider, parsed))  # type: ignore[attr-defined]
            data = self._echo(resp.data)
            await self._keep(data)
            return Completed(orjson.dumps(data), resp.usage, lambda: _output_tokens(data))
        self._translatable()
        call = UpstreamCall(provider.deployment.upstream_body(parsed.routing), Endpoint.CHAT)
        resp = await provider.complete(call)
        data = from_chat(resp.data, self.response, resp.usage)
        await self._keep(data)
        return Completed(orjson.dumps(data), resp.usage, lambda: completion_tokens(resp.data))

    async def open(self, provider: Provider, parsed: Parsed) -> Opened:
        if _native(provider):
            events = provider.responses_stream(self._native_body(provider, parsed))  # type: ignore[attr-defined]
            first, rest = await open_stream(events)
            return Opened(first, rest, True)
        self._translatable()
        first, rest = await open_chat_stream(provider, parsed.routing)
        return Opened(first, rest, False)

    def relay(self, parsed: Parsed, opened: Opened, outcome: Outcome, finish: Finish) -> AsyncIterator[bytes]:
        if opened.native:
            return relay_native(
                opened.first,
                opened.rest,
                outcome,
                parsed.routing,
                self.response,
                self._echo,
                self._keep,
                finish,
            )
        converter = ChatToEvents(self.response)
        return relay_translated(
            opened.first, opened.rest, outcome, parsed.routing, converter, self._keep, finish
        )
