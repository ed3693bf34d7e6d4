"""Native Anthropic Messages API adapter.

OpenAI-shaped calls are translated (`providers.anthropic_translate`) to `POST /v1/messages` and back.
`messages` / `messages_stream` are the untranslated passthrough the gateway's `/v1/messages` uses when
the deployment is Anthropic: the upstream's bytes reach the client unchanged.

Streams: the first events of an Anthropic stream (message_start, ping, content_block_start) carry no
content, and Anthropic may still fail the request after them with an `event: error` inside the 200
response (typically overloaded_error). Those leading events are held back until real content arrives,
so such a failure is raised from the first `__anext__`, before anything reached the client, and the
gateway can still retry or fall back.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from providers.anthropic_translate import (
    ANTHROPIC_ERROR_STATUS,
    AnthropicStreamToOpenAI,
    TranslationError,
    anthropic_response_to_openai,
    anthropic_usage_to_openai,
    openai_request_to_anthropic,
)
from providers.base import (
    Chunk,
    Endpoint,
    UpstreamCall,
    UpstreamError,
    UpstreamResponse,
    Usage,
    connect_error,
    http_error,
    midstream_error,
    parse_retry_after,
    timeout_error,
)
from providers.deployment import Deployment

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

_EOL = re.compile(rb"\r\n|\r|\n")


@dataclass(slots=True)
class SSEEvent:
    raw: bytes  # the event's exact bytes, through its terminating blank line
    event: str | None
    data: bytes


class SSEDecoder:
    """Incremental server-sent-events parser: events may be split across reads at any byte, and lines
    may end in \\n, \\r\\n or \\r. Keeps each event's exact bytes for passthrough."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # start of the first line not yet parsed
        self._event: str | None = None
        self._data: list[bytes] = []

    def feed(self, piece: bytes) -> list[SSEEvent]:
        self._buf += piece
        events: list[SSEEvent] = []
        while True:
            match = _EOL.search(self._buf, self._pos)
            if match is None:
                break
            if match.group() == b"\r" and match.end() == len(self._buf):
                break  # may be the first half of a \r\n split across reads
            line = bytes(self._buf[self._pos : match.start()])
            self._pos = match.end()
            if line:
                self._field(line)
                continue
            if self._data:
                raw = bytes(self._buf[: self._pos])
                events.append(SSEEvent(raw=raw, event=self._event, data=b"\n".join(self._data)))
            del self._buf[: self._pos]
            self._pos = 0
            self._event, self._data = None, []
        return events

    def flush(self) -> list[SSEEvent]:
        """At end of stream: an unterminated last event still counts (lenient where the spec drops it)."""
        if not self._buf.strip():
            return []
        return self.feed(b"\n\n")

    def _field(self, line: bytes) -> None:
        if line.startswith(b":"):
            return  # comment
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"data":
            self._data.append(value)


def usage_from_anthropic(usage: Mapping[str, Any] | None) -> Usage | None:
    """Anthropic usage -> `Usage`. prompt_tokens includes cache reads and writes exactly once;
    cached_tokens is the cache-read subset of it."""
    if not usage:
        return None
    return Usage.from_openai(anthropic_usage_to_openai(usage))


class AnthropicStreamUsage:
    """Usage of a passed-through Anthropic stream: feed it each event's parsed data."""

    def __init__(self) -> None:
        self._usage: dict[str, int] = {}

    def feed(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if kind == "message_start":
            usage = (event.get("message") or {}).get("usage")
        elif kind == "message_delta":
            usage = event.get("usage")
        else:
            return
        # Counts are cumulative totals: later non-null values overwrite earlier ones.
        for key, value in (usage or {}).items():
            if isinstance(value, int) and not isinstance(value, bool):
                self._usage[key] = value

    @property
    def usage(self) -> Usage | None:
        return usage_from_anthropic(self._usage)


class AnthropicProvider:
    """One Anthropic deployment: one pooled keep-alive client, one attempt per call."""

    native_text = False

    def __init__(self, deployment: Deployment, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.deployment = deployment
        base = (deployment.api_base or DEFAULT_API_BASE).rstrip("/").removesuffix("/v1")
        self._url = f"{base}/v1/messages"
        self._fixed_headers: dict[str, str] = dict(deployment.headers)
        if deployment.api_key:
            self._fixed_headers["x-api-key"] = deployment.api_key
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(deployment.timeout, connect=deployment.connect_timeout),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
            headers={"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION},
            transport=transport,  # tests only: an in-process transport in place of the network
        )

    # ------------------------------------------------------------------ Provider protocol

    async def complete(self, call: UpstreamCall) -> UpstreamResponse:
        payload = self._chat_payload(call, stream=False)
        response = await self._post(payload, call.headers)
        data = _parse_json(response.content)
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
        await self._client.aclose()

    # ------------------------------------------------------------------ native /v1/messages passthrough

    async def messages(
        self, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> UpstreamResponse:
        """An Anthropic request (model already replaced) sent as is; the answer's bytes are untouched."""
        payload = {k: v for k, v in body.items() if k != "stream"}
        response = await self._post(payload, headers or {})
        data = _parse_json(response.content)
        return UpstreamResponse(
            body=response.content, data=data, usage=usage_from_anthropic(data.get("usage"))
        )

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

    async def _post(self, payload: dict[str, Any], headers: Mapping[str, str]) -> httpx.Response:
        try:
            response = await self._client.post(
                self._url, content=orjson.dumps(payload), headers=self._headers(headers)
            )
        except httpx.HTTPError as exc:
            raise _transport_error(exc, started=False) from exc
        if response.status_code >= 400:
            raise _status_error(response.status_code, response.content, response.headers)
        return response

    async def _events(
        self, payload: dict[str, Any], headers: Mapping[str, str]
    ) -> AsyncIterator[tuple[bytes, dict[str, Any]]]:
        """The upstream stream as (exact event bytes, parsed data), opened lazily so that every failure
        before the first content is raised from the first `__anext__`."""
        request = self._client.build_request(
            "POST", self._url, content=orjson.dumps(payload), headers=self._headers(headers)
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, started=False) from exc
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
        try:
            if response.status_code >= 400:
                raise _status_error(response.status_code, await response.aread(), response.headers)
            async for piece in response.aiter_bytes():
                ready, failure = accept(decoder.feed(piece))
                for item in ready:
                    started = True
                    yield item
                if failure is not None:
                    raise failure
            ready, failure = accept(decoder.flush())
            for item in ready:
                started = True
                yield item
            if failure is not None:
                raise failure
            if not complete:
                raise midstream_error("upstream closed the stream before message_stop")
        except httpx.HTTPError as exc:
            raise _transport_error(exc, started=started) from exc
        finally:
            await response.aclose()


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


def _status_error(status: int, body: bytes, headers: httpx.Headers) -> UpstreamError:
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
        exc = midstream_error(f"{kind}: {message}")
        exc.code = kind
        return exc
    return http_error(ANTHROPIC_ERROR_STATUS.get(kind, 500), message, code=kind)


def _transport_error(exc: httpx.HTTPError, *, started: bool) -> UpstreamError:
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if started:
        return midstream_error(detail)
    if isinstance(exc, httpx.TimeoutException):
        return timeout_error(f"upstream timed out ({detail})")
    if isinstance(exc, httpx.ConnectError):
        return connect_error(detail)
    # e.g. the connection dropped before a complete response: nothing reached the client, retry is safe.
    return UpstreamError(
        502, f"upstream connection failed: {detail}", type="api_connection_error", retryable=True
    )
