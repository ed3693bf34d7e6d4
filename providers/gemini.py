"""Google Gemini over its native REST API (generateContent / streamGenerateContent / batchEmbedContents).

The google SDK is not used: one pooled httpx client per deployment keeps the hot path lean, and the
translation to and from the OpenAI shape lives in `providers.gemini_translate` (pure, tested alone).

`deployment.options` understood here: `generation_config` (merged into generationConfig, e.g.
`{"thinkingConfig": {"thinkingBudget": 0}}`), `safety_settings` (Gemini's safetySettings list),
`task_type` (embeddings taskType), `trust_env` (let httpx read proxy settings from the environment).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from providers import gemini_translate as gt
from providers.base import (
    Chunk,
    Endpoint,
    UpstreamCall,
    UpstreamError,
    UpstreamResponse,
    connect_error,
    midstream_error,
    timeout_error,
)
from providers.deployment import Deployment
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
        self._root = api_root(deployment.api_base)
        headers = {"content-type": "application/json", **deployment.headers}
        if deployment.api_key:
            headers["x-goog-api-key"] = deployment.api_key
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(deployment.timeout, connect=deployment.connect_timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
            # Proxies from the environment would also catch loopback upstreams; opt in per deployment.
            trust_env=bool(deployment.options.get("trust_env", False)),
        )

    def _url(self, model: str, method: str) -> str:
        return f"{self._root}/models/{model}:{method}"

    def _model(self, call: UpstreamCall) -> str:
        return str(call.body.get("model") or self.deployment.model).removeprefix("models/")

    async def _post(self, url: str, payload: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        try:
            response = await self._client.post(url, content=orjson.dumps(payload), headers=headers)
        except httpx.TimeoutException as exc:
            raise timeout_error(f"gemini timed out: {type(exc).__name__}") from exc
        except httpx.ConnectError as exc:
            raise connect_error(str(exc) or type(exc).__name__) from exc
        except httpx.TransportError as exc:
            # The connection broke while the (non-streamed) answer was being read.
            raise connect_error(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise gt.error_from_body(
                response.status_code, response.content, response.headers.get("retry-after")
            )
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(502, "gemini returned invalid JSON", retryable=True) from exc
        if not isinstance(data, dict):
            raise UpstreamError(502, "gemini returned an unexpected document", retryable=True)
        return data

    @staticmethod
    def _check_chat(call: UpstreamCall) -> None:
        if call.endpoint is not Endpoint.CHAT:
            # native_text is False, so the gateway converts legacy completions to chat before calling.
            raise gt.bad_request(f"the gemini adapter serves chat, not {call.endpoint.value}")

    async def complete(self, call: UpstreamCall) -> UpstreamResponse:
        self._check_chat(call)
        model = self._model(call)
        payload = gt.build_request(call.body, self.deployment.options)
        data = await self._post(self._url(model, "generateContent"), payload, call.headers)
        return UpstreamResponse.from_data(gt.build_response(data, model))

    def stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]:
        return self._stream(call)

    async def _stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]:
        # An async generator: nothing is sent until the first __anext__, so every failure before the
        # first chunk surfaces there with its own status and stays retryable by the gateway.
        self._check_chat(call)
        model = self._model(call)
        payload = gt.build_request(call.body, self.deployment.options)
        url = self._url(model, "streamGenerateContent")
        state = gt.StreamState(model=model)
        started = False
        try:
            async with self._client.stream(
                "POST", url, params={"alt": "sse"}, content=orjson.dumps(payload), headers=call.headers
            ) as response:
                if response.status_code >= 400:
                    body = await response.aread()
                    raise gt.error_from_body(response.status_code, body, response.headers.get("retry-after"))
                async for event in _sse_events(response):
                    if isinstance(event.get("error"), dict):
                        status = int(event["error"].get("code") or 500)
                        raise gt.error_from_body(status, orjson.dumps(event))
                    for data in state.feed(event):
                        started = True
                        yield Chunk.from_data(data)
        except UpstreamError as exc:
            if started:
                raise midstream_error(exc.message) from exc
            raise
        except httpx.TimeoutException as exc:
            if started:
                raise midstream_error(f"timed out: {type(exc).__name__}") from exc
            raise timeout_error(f"gemini timed out: {type(exc).__name__}") from exc
        except httpx.ConnectError as exc:
            raise connect_error(str(exc) or type(exc).__name__) from exc
        except httpx.TransportError as exc:
            if started:
                raise midstream_error(f"{type(exc).__name__}: {exc}") from exc
            raise connect_error(f"{type(exc).__name__}: {exc}") from exc
        except orjson.JSONDecodeError as exc:
            if started:
                raise midstream_error("gemini sent an invalid stream event") from exc
            raise UpstreamError(502, "gemini sent an invalid stream event", retryable=True) from exc
        for data in state.close():
            yield Chunk.from_data(data)

    async def embed(self, call: UpstreamCall) -> UpstreamResponse:
        model = self._model(call)
        texts = gt.embed_inputs(call.body)
        payload = gt.build_embed_request(texts, model, call.body, self.deployment.options)
        data = await self._post(self._url(model, "batchEmbedContents"), payload, call.headers)
        # Gemini reports no token counts for embeddings; the local count keeps accounting honest.
        tokens = sum(count_tokens(t) for t in texts)
        return UpstreamResponse.from_data(
            gt.build_embed_response(data, model, tokens, call.body.get("encoding_format"))
        )

    async def aclose(self) -> None:
        await self._client.aclose()


async def _sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of a `text/event-stream` body (events end with a blank line; Gemini uses CRLF)."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if line:
            if line.startswith("data:"):
                lines.append(line[5:].removeprefix(" "))
            continue
        if lines:
            payload = "\n".join(lines)
            lines = []
            if payload.strip() and payload.strip() != "[DONE]":
                yield orjson.loads(payload)
    if lines and "".join(lines).strip():
        yield orjson.loads("\n".join(lines))
