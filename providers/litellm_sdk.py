"""The long tail of providers through the litellm SDK (`deployment.model` is a litellm model string such
as `groq/llama-3.1-8b-instant`). Imported only when a deployment names provider `litellm`, so litellm's
import cost never touches the other adapters.

litellm makes exactly one attempt here (no retries of its own): retries and fallbacks are the gateway's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httpx
import litellm
import openai

from providers.base import (
    Chunk,
    Endpoint,
    UpstreamCall,
    UpstreamError,
    UpstreamResponse,
    connect_error,
    http_error,
    midstream_error,
    parse_retry_after,
    timeout_error,
    token_count,
)
from providers.deployment import Deployment
from providers.redact import credentials

# The gateway's own request fields that must not reach litellm as provider params.
_GATEWAY_ONLY = frozenset({"model", "stream", "stream_options"})
# litellm's own knobs that callers must not override from a request body.
_LOCKED = ("num_retries", "max_retries", "drop_params", "api_base", "api_key", "api_version", "timeout")


def _retry_after(exc: Exception) -> float | None:
    # litellm keeps the upstream's headers on `litellm_response_headers`; its `response` is often a
    # synthetic placeholder.
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
        getattr(exc, "headers", None),
    ):
        if headers:
            value = parse_retry_after(headers.get("retry-after"))
            if value is not None:
                return value
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


_TIMEOUTS = (litellm.Timeout, openai.APITimeoutError, httpx.TimeoutException, TimeoutError)
_CONNECTION = (litellm.APIConnectionError, openai.APIConnectionError, httpx.TransportError, ConnectionError)


def map_exception(exc: BaseException, secrets: Iterable[str] = ()) -> UpstreamError:
    """A litellm (or openai / httpx) exception -> UpstreamError with the upstream's status kept and
    `secrets` (the deployment's credentials) taken out of its message."""
    return _mapped(exc).without(secrets)


def _mapped(exc: BaseException) -> UpstreamError:
    if isinstance(exc, UpstreamError):
        return exc
    message = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    # litellm reports some transport failures as a 500 InternalServerError ("Connection error."); the
    # cause chain tells a refused connection or a timeout apart from a real upstream 500.
    for link in _chain(exc):
        if isinstance(link, _TIMEOUTS):
            return timeout_error(f"upstream timed out: {message}")
        if isinstance(link, _CONNECTION):
            return connect_error(message)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status <= 599:
        # The upstream's own error object, when litellm kept it, reads better than litellm's wrapping.
        body = getattr(exc, "body", None)
        code = param = None
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            message = body["message"]
            code = body.get("code") if isinstance(body.get("code"), str) else None
            param = body.get("param") if isinstance(body.get("param"), str) else None
        return http_error(status, message, code=code, param=param, retry_after=_retry_after(exc))
    # Anything else (a bug in litellm, an unexpected payload) is a bad gateway, not the client's fault.
    return UpstreamError(502, f"litellm: {type(exc).__name__}: {message}", retryable=True)


def _dump(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    return obj.model_dump()


def _prune(value: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v is not None or k in keep}


# litellm bookkeeping that OpenAI clients never see from OpenAI itself.
_EXTRA_KEYS = ("provider_specific_fields", "moderation")


def clean_response(data: dict[str, Any]) -> dict[str, Any]:
    """litellm's ModelResponse dump, minus litellm's own additions and null placeholders."""
    out = _prune({k: v for k, v in data.items() if k not in _EXTRA_KEYS}, keep=("usage",))
    choices = []
    for choice in data.get("choices") or []:
        choice = {k: v for k, v in choice.items() if k not in _EXTRA_KEYS}
        message = choice.get("message")
        if isinstance(message, dict):
            message = _prune({k: v for k, v in message.items() if k not in _EXTRA_KEYS}, keep=("content",))
            choice["message"] = message
        choices.append(choice)
    out["choices"] = choices
    return out


def clean_chunk(data: dict[str, Any]) -> dict[str, Any]:
    """One litellm stream chunk dump as an OpenAI chat.completion.chunk; choices that carry nothing
    (litellm emits an empty one after the finish) are dropped."""
    out = _prune({k: v for k, v in data.items() if k not in _EXTRA_KEYS})
    choices = []
    for choice in data.get("choices") or []:
        delta = _prune({k: v for k, v in (choice.get("delta") or {}).items() if k not in _EXTRA_KEYS})
        if "tool_calls" in delta:
            delta["tool_calls"] = [
                {**_prune(tc), "function": _prune(tc.get("function") or {})} for tc in delta["tool_calls"]
            ]
        if not delta and choice.get("finish_reason") is None and choice.get("logprobs") is None:
            continue
        choices.append(
            {
                "index": choice.get("index", 0),
                "delta": delta,
                "logprobs": choice.get("logprobs"),
                "finish_reason": choice.get("finish_reason"),
            }
        )
    out["choices"] = choices
    return out


class LitellmProvider:
    # Legacy completions go through the gateway's chat conversion: litellm's text path is uneven
    # across providers, while chat is the shape every litellm provider supports.
    native_text = False

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self._secrets = credentials(deployment)
        self._timeout = httpx.Timeout(deployment.timeout, connect=deployment.connect_timeout)
        # Process-wide litellm settings, harmless to repeat: the gateway is litellm's only user here.
        # litellm prints a "Give Feedback / Get Help" banner on every exception unless told not to.
        litellm.suppress_debug_info = True
        # The openai and azure embedding paths do `max_retries or litellm.DEFAULT_MAX_RETRIES`, turning
        # the max_retries=0 passed below into 2 retries inside the openai client.
        litellm.DEFAULT_MAX_RETRIES = 0

    def _kwargs(self, call: UpstreamCall) -> dict[str, Any]:
        d = self.deployment
        kwargs: dict[str, Any] = {k: v for k, v in call.body.items() if k not in _GATEWAY_ONLY}
        kwargs.update(d.options)
        for key in _LOCKED:
            kwargs.pop(key, None)
        kwargs["model"] = d.model
        kwargs["drop_params"] = True
        kwargs["num_retries"] = 0
        kwargs["max_retries"] = 0
        kwargs["timeout"] = self._timeout
        if call.endpoint is not Endpoint.EMBED:
            # With tools present litellm imports its MCP proxy gateway (and the optional `mcp` package,
            # failing without it); the gateway never uses MCP tools, so that path is skipped.
            kwargs["_skip_mcp_handler"] = True
        if d.api_base:
            kwargs["api_base"] = d.api_base
        if d.api_key:
            kwargs["api_key"] = d.api_key
        if d.api_version:
            kwargs["api_version"] = d.api_version
        headers = {**d.headers, **call.headers}
        if headers:
            kwargs["extra_headers"] = {**(kwargs.get("extra_headers") or {}), **headers}
        return kwargs

    async def complete(self, call: UpstreamCall) -> UpstreamResponse:
        if call.endpoint is not Endpoint.CHAT:
            raise http_error(400, f"the litellm adapter serves chat, not {call.endpoint.value}")
        try:
            response = await litellm.acompletion(**self._kwargs(call))
        except Exception as exc:
            raise map_exception(exc, self._secrets) from exc
        return UpstreamResponse.from_data(clean_response(_dump(response)))

    def stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]:
        return self._stream(call)

    async def _stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]:
        # An async generator, so the request is only sent on the first __anext__ and any failure before
        # the first chunk is raised from there with its real status.
        if call.endpoint is not Endpoint.CHAT:
            raise http_error(400, f"the litellm adapter serves chat, not {call.endpoint.value}")
        kwargs = self._kwargs(call)
        kwargs["stream"] = True
        kwargs["stream_options"] = {"include_usage": True}
        started = False
        usage_sent = False
        last_usage: dict[str, Any] | None = None
        last: dict[str, Any] | None = None
        try:
            stream = await litellm.acompletion(**kwargs)
            async for item in stream:
                raw = _dump(item)
                usage = raw.get("usage")
                data = clean_chunk(raw)
                data.pop("usage", None)
                if usage:
                    last_usage = usage
                last = data
                if data["choices"]:
                    started = True
                    yield Chunk.from_data(data)
                elif usage:
                    # Already the usage-only chunk the gateway looks for.
                    started = True
                    usage_sent = True
                    yield Chunk.from_data({**data, "usage": usage})
        except Exception as exc:
            error = map_exception(exc, self._secrets)
            if started:
                raise midstream_error(error.message) from exc
            raise error from exc
        if last_usage and not usage_sent and last is not None:
            # litellm attached usage to a content chunk: the gateway reads it from one usage-only chunk.
            yield Chunk.from_data({**last, "choices": [], "usage": last_usage})

    async def embed(self, call: UpstreamCall) -> UpstreamResponse:
        kwargs = self._kwargs(call)
        try:
            response = await litellm.aembedding(**kwargs)
        except Exception as exc:
            raise map_exception(exc, self._secrets) from exc
        data = _dump(response)
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        prompt = token_count(usage.get("prompt_tokens"))
        data["usage"] = {
            "prompt_tokens": prompt,
            "total_tokens": token_count(usage.get("total_tokens")) or prompt,
        }
        return UpstreamResponse.from_data(data)

    async def aclose(self) -> None:
        # litellm pools its clients process-wide (keyed by params); there is nothing per-instance to close.
        return None
