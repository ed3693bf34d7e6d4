"""The one small contract every upstream adapter implements.

Requests and responses cross this boundary in the OpenAI shape (chat completions, legacy completions,
embeddings): the gateway speaks OpenAI internally and translates at its edges (`/v1/messages`) and in
the adapters. Adapters make exactly one attempt per call; retries, fallbacks and cooldowns belong to
the gateway, which decides from `UpstreamError.retryable`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import orjson

from providers.deployment import Deployment
from providers.redact import redact


class Endpoint(StrEnum):
    CHAT = "chat"  # /v1/chat/completions body
    TEXT = "text"  # /v1/completions body (legacy prompt completions)
    EMBED = "embed"  # /v1/embeddings body


# Token counts past this are not counts; Redis scripts and Lua doubles stay exact below it.
MAX_TOKEN_COUNT = 2**40


def token_count(value: Any, missing: int | None = 0) -> int | None:
    """An upstream's token count when it is one (a non-negative integer, or a float with no fraction);
    `missing` when absent; None when it is anything else, so the gateway counts the tokens itself."""
    if value is None:
        return missing
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value < MAX_TOKEN_COUNT:
        return value
    return None


@dataclass(slots=True)
class Usage:
    """One call's tokens. `prompt_tokens` is the whole input, cache reads and writes included once;
    `cached_tokens` (cache reads) and the two cache writes, by how long the entry lives, are parts of
    it, each priced apart (gateway.pricing)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0

    @property
    def cache_write_tokens(self) -> int:
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        """None when absent, and when the upstream's figures are not token counts: the gateway then
        counts what was sent and received rather than bill nonsense (a negative count once credited
        a budget). Cache writes come as LiteLLM and the Anthropic translation report them:
        `cache_creation_input_tokens`, with `cache_creation.ephemeral_1h_input_tokens` the 1-hour
        part of it (the rest is 5-minute writes, Anthropic's default)."""
        if not usage or not isinstance(usage, dict):
            return None
        details = usage.get("prompt_tokens_details")
        prompt = token_count(usage.get("prompt_tokens"))
        completion = token_count(usage.get("completion_tokens"))
        cached = token_count(details.get("cached_tokens")) if isinstance(details, dict) else 0
        written = token_count(usage.get("cache_creation_input_tokens"))
        by_ttl = usage.get("cache_creation")
        hour = token_count(by_ttl.get("ephemeral_1h_input_tokens")) if isinstance(by_ttl, dict) else 0
        if prompt is None or completion is None or cached is None or written is None or hour is None:
            return None
        cached = min(cached, prompt)
        written = min(written, prompt - cached)
        hour = min(hour, written)
        return cls(prompt, completion, cached, written - hour, hour)

    @classmethod
    def from_responses(cls, usage: Any) -> Usage | None:
        """The same from a Responses API usage object (input_tokens, output_tokens)."""
        if not usage or not isinstance(usage, dict):
            return None
        details = usage.get("input_tokens_details")
        prompt = token_count(usage.get("input_tokens"))
        completion = token_count(usage.get("output_tokens"))
        cached = token_count(details.get("cached_tokens")) if isinstance(details, dict) else 0
        if prompt is None or completion is None or cached is None:
            return None
        return cls(prompt, completion, min(cached, prompt))


@dataclass(slots=True)
class UpstreamCall:
    """One attempt against one deployment. `body` is OpenAI-shaped with `model` already set to the
    upstream's own model id; for streams it carries `stream: true` and
    `stream_options.include_usage: true` (the gateway always asks for usage)."""

    body: dict[str, Any]
    endpoint: Endpoint = Endpoint.CHAT
    # Extra request headers forwarded from the client (already filtered by the gateway).
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class UpstreamResponse:
    """A complete non-streamed answer, OpenAI-shaped. `body` is what the client receives, byte for byte;
    `data` is the same document parsed (adapters that pass bytes through parse once, never re-encode)."""

    body: bytes
    data: dict[str, Any]
    usage: Usage | None

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> UpstreamResponse:
        return cls(body=orjson.dumps(data), data=data, usage=Usage.from_openai(data.get("usage")))

    @classmethod
    def from_bytes(cls, body: bytes) -> UpstreamResponse:
        data = orjson.loads(body)
        return cls(body=body, data=data, usage=Usage.from_openai(data.get("usage")))


@dataclass(slots=True)
class Chunk:
    """One OpenAI chat.completion.chunk (or text_completion chunk) as a complete SSE event,
    `b"data: {...}\\n\\n"`, plus its parsed payload. Adapters never yield the `[DONE]` sentinel:
    the gateway writes it. A usage-only chunk has `choices == []` and `usage` set."""

    raw: bytes
    data: dict[str, Any]

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Chunk:
        return cls(raw=b"data: " + orjson.dumps(data) + b"\n\n", data=data)


class UpstreamError(Exception):
    """An attempt failed. `status` is what the client would see if nothing else is tried.

    retryable: a connect error, timeout, 429 or 5xx; another attempt (same or other deployment) may work.
    Adapters raise this for every failure, including a stream that dies after it started.

    Its text may reach the client word for word, so key-shaped text is redacted here, as it is built;
    adapters also take their deployment's own credentials out by value (`without`)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "api_error",
        code: str | None = None,
        param: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        message = redact(message)
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = None if param is None else redact(param)
        self.retryable = retryable
        self.retry_after = retry_after
        # Set by the gateway's dispatcher: the deployment that produced this error.
        self.deployment: Deployment | None = None

    def without(self, secrets: Iterable[str]) -> UpstreamError:
        """This error with `secrets` (its deployment's credentials, `redact.credentials`) taken out."""
        self.message = redact(self.message, secrets)
        self.args = (self.message,)
        return self

    def to_openai(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class Provider(Protocol):
    """One deployment's adapter. Built once at start (one pooled client each), closed at shutdown."""

    deployment: Deployment
    # True when the upstream speaks legacy /v1/completions itself; otherwise the gateway turns an
    # Endpoint.TEXT request into a chat request and the answer back into a text_completion.
    native_text: bool

    async def complete(self, call: UpstreamCall) -> UpstreamResponse:
        """Endpoint.CHAT or Endpoint.TEXT, non-streamed."""
        ...

    def stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]:
        """Endpoint.CHAT or Endpoint.TEXT, streamed. Errors before the first chunk are raised from the
        first `__anext__`, so the gateway can still retry or answer with a proper status."""
        ...

    async def embed(self, call: UpstreamCall) -> UpstreamResponse:
        """Endpoint.EMBED."""
        ...

    async def aclose(self) -> None: ...


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def http_error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    retry_after: float | None = None,
) -> UpstreamError:
    """The error for an upstream that answered with an HTTP error status (its status is kept)."""
    return UpstreamError(
        status,
        message,
        type=_ERROR_TYPES.get(status, "api_error"),
        code=code,
        param=param,
        retryable=status in (408, 429) or status >= 500,
        retry_after=retry_after,
    )


def connect_error(detail: str) -> UpstreamError:
    return UpstreamError(502, f"upstream unreachable: {detail}", type="api_connection_error", retryable=True)


def timeout_error(detail: str = "upstream timed out") -> UpstreamError:
    return UpstreamError(504, detail, type="timeout_error", retryable=True)


def midstream_error(detail: str) -> UpstreamError:
    """The upstream failed after the stream had started; never retried once bytes reached the client."""
    return UpstreamError(502, f"upstream stream interrupted: {detail}", type="api_error", retryable=True)


def stalled(exc: UpstreamError, started: bool) -> UpstreamError:
    """A read timeout once content went out is a broken stream like any other, not a 504 answer."""
    return midstream_error(exc.message) if started and exc.type == "timeout_error" else exc


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
