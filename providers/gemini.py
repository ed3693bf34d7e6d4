"""Google Gemini over its native REST API (generateContent / streamGenerateContent / batchEmbedContents).

The google SDK is not used: the shared pooled `HttpClient` keeps the hot path lean, and the translation
to and from the OpenAI shape lives in pure modules tested alone: `providers.gemini_request`,
`providers.gemini_response`, `providers.gemini_embeddings` (with `gemini_schema`, `gemini_tool_ids`
and `gemini_errors` beside them).

`deployment.options` understood here: `generation_config` (merged into generationConfig, e.g.
`{"thinkingConfig": {"thinkingBudget": 0}}`), `safety_settings` (Gemini's safetySettings list),
`task_type` (embeddings taskType), `trust_env` (let the client read proxy settings from the environment).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from providers.base import (
    Chunk,
    Endpoint,
    UpstreamCall,
    UpstreamError,
    UpstreamResponse,
    midstream_error,
    stalled,
)
from providers.deployment import Deployment
from providers.gemini_embeddings import build_embed_request, build_embed_response, embed_inputs
from providers.gemini_errors import bad_request, error_from_body
from providers.gemini_request import build_request
from providers.gemini_response import StreamState, build_response
from providers.http import HttpClient
from providers.redact import credentials
from providers.sse import sse_events
from routing.tokens import count_tokens

DEFAULT_API_BASE = "https://generativelanguage.googleapis.com"


def api_root(api_base: str | None) -> str:
    """`{base}/v1beta`, whether or not the configured base already names the version."""
    base = (api_base or DEFAULT_API_BASE).rstrip("/")
    return base if base.endswith("/v1beta") else f"{base}/v1beta"


class GeminiProvider:
    native_text = False

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self._secrets = credentials(deployment)
        self._root = api_root(deployment.api_base)
        headers = {"content-type": "application/json", **deployment.headers}
        if deployment.api_key:
            headers["x-goog-api-key"] = deployment.api_key
        self._http = HttpClient(
            timeout=deployment.timeout,
            connect_timeout=deployment.connect_timeout,
            headers=headers,
            # Proxies from the environment would also catch loopback upstreams; opt in per deployment.
            trust_env=bool(deployment.options.get("trust_env", False)),
        )

    def _url(self, model: str, method: str) -> str:
        return f"{self._root}/models/{model}:{method}"

    def _model(self, call: UpstreamCall) -> str:
        return str(call.body.get("model") or self.deployment.model).removeprefix("models/")

    async def _post(self, url: str, payload: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
        response = await self._http.post(url, orjson.dumps(payload), headers or None)
        if response.status >= 400:
            retry_after = response.headers.get("retry-after")
            raise error_from_body(response.status, response.body, retry_after).without(self._secrets)
        try:
            data = orjson.loads(response.body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(502, "gemini returned invalid JSON", retryable=True) from exc
        if not isinstance(data, dict):
            raise UpstreamError(502, "gemini returned an unexpected document", retryable=True)
        return data

    @staticmethod
    def _check_chat(call: UpstreamCall) -> None:
        if call.endpoint is not Endpoint.CHAT:
            # native_text is False, so the gateway converts legacy completions to chat before calling.
            raise bad_request(f"the gemini adapter serves chat, not {call.endpoint.value}")

    async def complete(self, call: UpstreamCall) -> UpstreamResponse:
        self._check_chat(call)
        model = self._model(call)
        payload = build_request(call.body, self.deployment.options)
        data = await self._post(self._url(model, "generateContent"), payload, call.headers)
        return UpstreamResponse.from_data(build_response(data, model))

    def stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]:
        return self._stream(call)

    async def _stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]:
        # An async generator: nothing is sent until the first __anext__, so every failure before the
        # first chunk surfaces there with its own status and stays retryable by the gateway.
        self._check_chat(call)
        model = self._model(call)
        payload = build_request(call.body, self.deployment.options)
        url = self._url(model, "streamGenerateContent") + "?alt=sse"
        state = StreamState(model=model)
        started = False
        async with self._http.stream(url, orjson.dumps(payload), call.headers or None) as response:
            if response.status >= 400:
                body, retry_after = await response.read(), response.headers.get("retry-after")
                raise error_from_body(response.status, body, retry_after).without(self._secrets)
            try:
                async for _name, data in sse_events(response.pieces()):
                    if data.strip() in (b"", b"[DONE]"):
                        continue
                    for chunk in state.feed(_parse_event(data, started=started)):
                        started = True
                        yield Chunk.from_data(chunk)
            except UpstreamError as exc:
                raise stalled(exc, started).without(self._secrets) from None
        for chunk in state.close():
            yield Chunk.from_data(chunk)

    async def embed(self, call: UpstreamCall) -> UpstreamResponse:
        model = self._model(call)
        texts = embed_inputs(call.body)
        payload = build_embed_request(texts, model, call.body, self.deployment.options)
        data = await self._post(self._url(model, "batchEmbedContents"), payload, call.headers)
        # Gemini reports no token counts for embeddings; the local count keeps accounting honest.
        tokens = sum(count_tokens(t) for t in texts)
        return UpstreamResponse.from_data(
            build_embed_response(data, model, tokens, call.body.get("encoding_format"))
        )

    async def aclose(self) -> None:
        await self._http.aclose()


def _parse_event(data: bytes, *, started: bool) -> dict[str, Any]:
    """One SSE event's JSON; Gemini may end a 200 stream with an error document instead of a candidate."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        detail = "gemini sent an invalid stream event"
        raise (midstream_error(detail) if started else UpstreamError(502, detail, retryable=True)) from None
    if not isinstance(event, dict):
        event = {}
    if isinstance(event.get("error"), dict):
        exc = error_from_body(int(event["error"].get("code") or 500), data)
        raise midstream_error(exc.message) if started else exc
    return event
