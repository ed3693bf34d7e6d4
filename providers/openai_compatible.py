"""Any upstream that speaks OpenAI's HTTP API: OpenAI, Azure OpenAI, Groq, Together, vLLM, OpenRouter...

Bytes pass through: the request body is encoded once, the response body is handed to the client as
received and parsed once (for usage), stream events are re-framed without re-encoding their JSON.
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
    Usage,
    http_error,
    midstream_error,
    parse_retry_after,
    stalled,
)
from providers.deployment import Deployment
from providers.http import HttpClient
from providers.redact import credentials
from providers.sse import sse_events

_PATHS = {Endpoint.CHAT: "/chat/completions", Endpoint.TEXT: "/completions", Endpoint.EMBED: "/embeddings"}
_OPENAI_HOST = "api.openai.com"


class OpenAICompatibleProvider:
    native_text = True
    # OpenAI's own API serves /v1/responses; other OpenAI-compatible servers and Azure are reached
    # through chat completions (gateway.responses.translate).
    responses_url: str | None = None

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self._secrets = credentials(deployment)
        headers = {"content-type": "application/json"}
        if deployment.provider == "azure":
            base = (deployment.api_base or "").rstrip("/")
            version = deployment.api_version or "2024-10-21"
            prefix = f"{base}/openai/deployments/{deployment.model}"
            self._urls = {ep: f"{prefix}{path}?api-version={version}" for ep, path in _PATHS.items()}
            if deployment.api_key:
                headers["api-key"] = deployment.api_key
        else:
            base = (deployment.api_base or "https://api.openai.com/v1").rstrip("/")
            self._urls = {ep: base + path for ep, path in _PATHS.items()}
            if deployment.provider == "openai":
                self.responses_url = base + "/responses"
            if deployment.api_key:
                headers["authorization"] = f"Bearer {deployment.api_key}"
        headers.update(deployment.headers)
        # OpenAI itself refuses Anthropic's cache_control marks (it caches on its own); other servers
        # of its API (a LiteLLM proxy, vLLM...) may read them, so they keep them, as LiteLLM does.
        self._unmark = deployment.provider == "azure" or (
            deployment.provider == "openai" and _OPENAI_HOST in (deployment.api_base or _OPENAI_HOST)
        )
        self._http = HttpClient(
            timeout=deployment.timeout,
            connect_timeout=deployment.connect_timeout,
            headers=headers,
            # Proxies from the environment would also catch loopback upstreams; opt in per deployment.
            trust_env=bool(deployment.options.get("trust_env", False)),
        )

    def _body(self, call: UpstreamCall) -> bytes:
        if self._unmark and call.endpoint is Endpoint.CHAT:
            return orjson.dumps(without_cache_marks(call.body))
        return orjson.dumps(call.body)

    async def complete(self, call: UpstreamCall) -> UpstreamResponse:
        resp = await self._http.post(self._urls[call.endpoint], self._body(call), call.headers or None)
        if resp.status >= 400:
            raise _error_from(resp.status, resp.headers, resp.body).without(self._secrets)
        return _parse_body(resp.body)

    async def embed(self, call: UpstreamCall) -> UpstreamResponse:
        return await self.complete(call)

    async def stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]:
        url = self._urls[call.endpoint]
        async with self._http.stream(url, self._body(call), call.headers or None) as resp:
            if resp.status >= 400:
                raise _error_from(resp.status, resp.headers, await resp.read()).without(self._secrets)
            started = False
            try:
                async for _event, data in sse_events(resp.pieces()):
                    if data == b"[DONE]":
                        return
                    try:
                        parsed = orjson.loads(data)
                    except orjson.JSONDecodeError:
                        raise midstream_error("upstream sent a malformed event") from None
                    if "error" in parsed and "choices" not in parsed:
                        raise _error_payload(parsed, 502 if started else 500)
                    started = True
                    yield Chunk(raw=b"data: " + data + b"\n\n", data=parsed)
            except UpstreamError as exc:
                raise stalled(exc, started).without(self._secrets) from None
            if not started:
                raise midstream_error("upstream closed the stream before sending anything")

    async def responses(self, body: dict[str, Any]) -> UpstreamResponse:
        """A Responses API request (model already replaced) sent as is; the answer's bytes and usage
        as the upstream gave them."""
        assert self.responses_url is not None
        resp = await self._http.post(self.responses_url, orjson.dumps(body))
        if resp.status >= 400:
            raise _error_from(resp.status, resp.headers, resp.body).without(self._secrets)
        try:
            data = orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            raise UpstreamError(502, "upstream returned a body that is not JSON", retryable=True) from None
        if not isinstance(data, dict):
            raise UpstreamError(502, "upstream returned a body that is not an object", retryable=True)
        if not isinstance(data.get("output"), list):
            raise UpstreamError(502, "upstream returned a body that is not a Response", retryable=True)
        return UpstreamResponse(resp.body, data, Usage.from_responses(data.get("usage")))

    async def responses_stream(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        """Each typed event of a streamed Responses request as `Chunk(raw=<event as received>, data)`."""
        assert self.responses_url is not None
        async with self._http.stream(self.responses_url, orjson.dumps({**body, "stream": True})) as resp:
            if resp.status >= 400:
                raise _error_from(resp.status, resp.headers, await resp.read()).without(self._secrets)
            started = False
            try:
                async for event, data in sse_events(resp.pieces()):
                    try:
                        parsed = orjson.loads(data)
                    except orjson.JSONDecodeError:
                        raise midstream_error("upstream sent a malformed event") from None
                    if not isinstance(parsed, dict):
                        raise midstream_error("upstream sent an event that is not an object")
                    if parsed.get("type") == "error" and not started:
                        raise _error_payload({"error": parsed}, 500)
                    started = True
                    name = event or str(parsed.get("type") or "").encode()
                    yield Chunk(raw=b"event: " + name + b"\ndata: " + data + b"\n\n", data=parsed)
            except UpstreamError as exc:
                raise stalled(exc, started).without(self._secrets) from None
            if not started:
                raise midstream_error("upstream closed the stream before sending anything")

    async def aclose(self) -> None:
        await self._http.aclose()


def without_cache_marks(body: dict[str, Any]) -> dict[str, Any]:
    """A chat body without `cache_control` on its messages, their content parts and its tools; the
    same object when it has none (nothing copied)."""
    messages, tools = body.get("messages"), body.get("tools")
    clean_messages, clean_tools = _unmarked_list(messages), _unmarked_list(tools)
    if clean_messages is messages and clean_tools is tools:
        return body
    return {**body, "messages": clean_messages, **({"tools": clean_tools} if tools is not None else {})}


def _unmarked_list(items: Any) -> Any:
    if not isinstance(items, list):
        return items
    out: list[Any] | None = None
    for i, item in enumerate(items):
        clean = _unmarked(item)
        if clean is not item:
            out = out if out is not None else list(items)
            out[i] = clean
    return items if out is None else out


def _unmarked(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    content = item.get("content")
    clean_content = _unmarked_list(content)
    if "cache_control" not in item and clean_content is content:
        return item
    out = {k: v for k, v in item.items() if k != "cache_control"}
    if clean_content is not content:
        out["content"] = clean_content
    return out


def _parse_body(body: bytes) -> UpstreamResponse:
    try:
        return UpstreamResponse.from_bytes(body)
    except (orjson.JSONDecodeError, AttributeError):
        raise UpstreamError(502, "upstream returned a body that is not JSON", retryable=True) from None


def _error_payload(payload: dict[str, Any], status: int) -> UpstreamError:
    err = payload.get("error")
    if isinstance(err, dict):
        exc = http_error(status, str(err.get("message") or "upstream error"), code=_str(err.get("code")))
        exc.param = _str(err.get("param"))
        return exc
    return http_error(status, str(err or "upstream error"))


def _error_from(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict) and "error" in payload:
        exc = _error_payload(payload, status)
    else:
        text = body[:500].decode("utf-8", "replace").strip() or "no body"
        exc = http_error(status, f"upstream returned {status}: {text}")
    exc.retry_after = parse_retry_after(headers.get("retry-after"))
    return exc


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
