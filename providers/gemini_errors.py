"""Gemini failures as `UpstreamError`: Google's error documents, and requests refused before sending."""

from __future__ import annotations

from typing import Any

import orjson

from providers.base import UpstreamError, http_error, parse_retry_after


def bad_request(message: str, param: str | None = None) -> UpstreamError:
    return http_error(400, message, param=param)


def _retry_delay(error: dict[str, Any]) -> float | None:
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = str(detail.get("retryDelay") or "")
            return parse_retry_after(delay.removesuffix("s"))
    return None


def error_from_body(status: int, body: bytes, retry_after_header: str | None = None) -> UpstreamError:
    """A Google error body `{"error": {"code", "message", "status", "details"}}` -> UpstreamError."""
    message, code, delay = body.decode(errors="replace")[:500] or f"HTTP {status}", None, None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and data:  # streamGenerateContent without alt=sse wraps errors in an array
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or message)
        code = error.get("status")
        delay = _retry_delay(error)
    retry_after = parse_retry_after(retry_after_header)
    return http_error(
        status, message, code=code, retry_after=retry_after if retry_after is not None else delay
    )
