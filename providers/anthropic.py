"""Native Anthropic Messages API adapter.

OpenAI-shaped calls are translated (`providers.anthropic_translate_upstream`) to `POST /v1/messages`
and back.
`messages` / `messages_stream` are the untranslated passthrough the gateway's `/v1/messages` uses when
the deployment is Anthropic: the upstream's bytes reach the client unchanged.

Streams: the first events of an Anthropic stream (message_start, ping, content_block_start) carry no
content, and Anthropic may still fail the request after them with an `event: error` inside the 200
response (typically overloaded_error). Those leading events are held back until real content arrives,
so such a failure is raised from the first `__anext__`, before anything reached the client, and the
gateway can still retry or fall back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from providers.anthropic_sse import SSEDecoder, SSEEvent
from providers.anthropic_translate import TranslationError
from providers.anthropic_translate_stream import (
    ANTHROPIC_ERROR_STATUS,
    AnthropicStreamToOpenAI,
    anthropic_usage_to_openai,
    merge_anthropic_usage,
)
from providers.anthropic_translate_upstream import anthropic_response_to_openai, openai_request_to_anthropic
from providers.base import (
    Chunk,
    Endpoint,
    UpstreamCall,
    UpstreamError,
    UpstreamResponse,
    Usage,
    http_error,
    midstream_error,
    parse_retry_after,
    stalled,
)
from providers.deployment import Deployment
from providers.http import HttpClient
from providers.redact import credentials

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_API_BASE = "https://api.anthropic.com"

# Never forwarded from the client even if the gateway's filter lets them through: the client's own
# credentials must not reach the upstream, and framing headers belong to this request, not that one.
_NEVER_FORWARD = frozenset(
    {
        "authorization",
        "x-api-key",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
    }
)

# Stream events that carry no content: held back until content arrives (see module docstring).
_PREAMBLE_EVENTS = frozenset({"message_start", "ping", "content_block_start"})


def usage_from_anthropic(usage: Mapping[str, Any] | None) -> Usage | None:
    """Anthropic usage -> `Usage`. prompt_tokens includes cache reads and writes exactly once;
    cached_tokens is the cache-read subset of it."""
    if not usage:
        return None
    return Usage.from_openai(anthropic_usage_to_openai(usage))


class AnthropicStreamUsage:
    """Usage of a passed-through Anthropic stream: feed it each event's parsed data."""

    def __init__(self) -> None:
        self._usage: dict[str, Any] = {}

    def feed(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if kind == "message_start":
            usage = (event.get("message") or {}).get("usage")
        elif kind == "message_delta":
            usage = event.get("usage")
        else:
            return
        merge_anthropic_usage(self._usage, usage)

    @property
    def usage(self) -> Usage | None:
        return usage_from_anthropic(self._usage)


class AnthropicProvider:
    """One Anthropic deployment: one pooled keep-alive client, one attempt per call."""

    native_text = False

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self._secrets = credentials(deployment)
        base = (deployment.api_base or DEFAULT_API_BASE).rstrip("/").removesuffix("/v1")
        self._url = f"{base}/v1/messages"
        # Deployment headers and the key win over anything a client forwards (`_headers`); the defaults
        # given to the HttpClient below do not, so a client may still pick its own anthropic-version.
        self._fixed_headers: dict[str, str] = dict(deployment.headers)
        if deployment.api_key:
            self._fixed_headers["x-api-key"] = deployment.api_key
        self._http = HttpClient(
            timeout=deployment.timeout,
            connect_timeout=deployment.connect_timeout,
            headers={"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION},
            # Proxies from the environment would also catch loopback upstreams; opt in per deployment.
            trust_env=bool(deployment.options.get("trust_env", False)),
        )

    # ------------------------------------------------------------------ Provider protocol

    async def complete(self, call: UpstreamCall) -> UpstreamResponse:
        payload = self._chat_payload(call, stream=False)
        data = _parse_json(await self._post(payload, call.headers))
        model = str(call.body.get("model") or self.deployment.model)
        return UpstreamResponse.from_data(anthropic_response_to_openai(data, model))

    async def stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]:
        payload = self._chat_payload(call, stream=True)
        translator = AnthropicStreamToOpenAI(str(call.body.get("model") or self.deployment.model))
        async for _raw, event in self._events(payload, call.headers):
            for chunk in translator.feed(event):
                yield Chunk.from_data(chunk)

    async def embed(self, call: UpstreamCall) -> UpstreamResponse:
        raise UpstreamError(
            400, "Anthropic deployments do not serve embeddings", type="invalid_request_error"
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ native /v1/messages passthrough

    async def messages(
        self, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> UpstreamResponse:
        """An Anthropic request (model already replaced) sent as is; the answer's bytes are untouched."""
        payload = {k: v for k, v in body.items() if k != "stream"}
        body_bytes = await self._post(payload, headers or {})
        data = _parse_json(body_bytes)
        return UpstreamResponse(body=body_bytes, data=data, usage=usage_from_anthropic(data.get("usage")))

    async def messages_stream(
        self, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[Chunk]:
        """Each upstream SSE event as `Chunk(raw=<its exact bytes>, data=<its parsed data>)`. Use
        `AnthropicStreamUsage` on the data to learn the usage."""
        payload = {**body, "stream": True}
        async for raw, event in self._events(payload, headers or {}):
            yield Chunk(raw=raw, data=event)

    # ------------------------------------------------------------------ internals

    def _chat_payload(self, call: UpstreamCall, *, stream: bool) -> dict[str, Any]:
        if call.endpoint is not Endpoint.CHAT:
            raise UpstreamError(
                400,
                f"endpoint {call.endpoint.value!r} is not served by Anthropic",
                type="invalid_request_error",
            )
        try:
            payload = openai_request_to_anthropic(call.body)
        except TranslationError as exc:
            raise UpstreamError(400, exc.message, type="invalid_request_error", param=exc.param) from exc
        payload["model"] = payload.get("model") or self.deployment.model
        if stream:
            payload["stream"] = True
        else:
            payload.pop("stream", None)
        return payload

    def _headers(self, extra: Mapping[str, str]) -> dict[str, str]:
        if not extra:
            return self._fixed_headers
        # Lower-cased so a client's "Anthropic-Beta" and a deployment's "anthropic-beta" do not both go.
        merged = {k.lower(): v for k, v in extra.items() if k.lower() not in _NEVER_FORWARD}
        merged.update({k.lower(): v for k, v in self._fixed_headers.items()})
        return merged

    async def _post(self, payload: dict[str, Any], headers: Mapping[str, str]) -> bytes:
        response = await self._http.post(self._url, orjson.dumps(payload), self._headers(headers))
        if response.status >= 400:
            raise _status_error(response.status, response.body, response.headers).without(self._secrets)
        return response.body

    async def _events(
        self, payload: dict[str, Any], headers: Mapping[str, str]
    ) -> AsyncIterator[tuple[bytes, dict[str, Any]]]:
        """The upstream stream as (exact event bytes, parsed data), opened lazily so that every failure
        before the first content is raised from the first `__anext__`."""
        started = False
        complete = False
        held: list[tuple[bytes, dict[str, Any]]] = []

        def accept(events: list[SSEEvent]) -> tuple[list[tuple[bytes, dict[str, Any]]], UpstreamError | None]:
            """What is ready to yield, and the failure to raise once it has been yielded."""
            nonlocal complete
            ready: list[tuple[bytes, dict[str, Any]]] = []
            for sse in events:
                try:
                    event = _parse_event(sse, started=started or bool(ready))
                except UpstreamError as exc:
                    return ready, exc
                kind = event.get("type") or sse.event
                if kind == "error":
                    return ready, _stream_event_error(event, started=started or bool(ready))
                complete = complete or kind == "message_stop"
                if not started and not ready and kind in _PREAMBLE_EVENTS:
                    held.append((sse.raw, event))
                    continue
                ready += held
                held.clear()
                ready.append((sse.raw, event))
            return ready, None

        decoder = SSEDecoder()
        async with self._http.stream(self._url, orjson.dumps(payload), self._headers(headers)) as response:
            if response.status >= 400:
                body = await response.read()
                raise _status_error(response.status, body, response.headers).without(self._secrets)
            try:
                async for piece in response.pieces():
                    ready, failure = accept(decoder.feed(piece))
                    for item in ready:
                        started = True
                        yield item
                    if failure is not None:
                        raise failure
            except UpstreamError as exc:
                raise stalled(exc, started).without(self._secrets) from None
            ready, failure = accept(decoder.flush())
            for item in ready:
                started = True
                yield item
            if failure is not None:
                raise failure.without(self._secrets)
            if not complete:
                raise midstream_error("upstream closed the stream before message_stop")


def _parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(502, "upstream returned invalid JSON", retryable=True) from exc
    if not isinstance(data, dict):
        raise UpstreamError(502, "upstream returned a non-object JSON document", retryable=True)
    return data


def _parse_event(sse: SSEEvent, *, started: bool) -> dict[str, Any]:
    try:
        event = orjson.loads(sse.data)
    except orjson.JSONDecodeError as exc:
        detail = "upstream sent an event that is not JSON"
        raise (midstream_error(detail) if started else UpstreamError(502, detail, retryable=True)) from exc
    return event if isinstance(event, dict) else {}


def _status_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
    kind: str | None = None
    message = ""
    try:
        error = orjson.loads(body).get("error") or {}
        kind, message = error.get("type"), str(error.get("message") or "")
    except (orjson.JSONDecodeError, AttributeError):
        message = body[:500].decode("utf-8", "replace")
    return http_error(
        status,
        message or f"upstream answered HTTP {status}",
        code=kind,
        retry_after=parse_retry_after(headers.get("retry-after")),
    )


def _stream_event_error(event: Mapping[str, Any], *, started: bool) -> UpstreamError:
    error = event.get("error") or {}
    kind = str(error.get("type") or "api_error")
    message = str(error.get("message") or kind)
    if started:
        # Keep the upstream's own type and message: /v1/messages relays them to the client as they were.
        return UpstreamError(502, message, type="api_error", code=kind, retryable=True)
    return http_error(ANTHROPIC_ERROR_STATUS.get(kind, 500), message, code=kind)
