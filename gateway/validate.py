"""Cheap structural checks of a request body: a clear 400 here beats an upstream's cryptic one."""

from __future__ import annotations

from typing import Any

from gateway.errors import bad_request
from providers.base import Endpoint

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def _positive_int(body: dict[str, Any], key: str) -> None:
    value = body.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise bad_request(f"{key} must be a positive integer", param=key)


def _number(body: dict[str, Any], key: str, lo: float, hi: float) -> None:
    value = body.get(key)
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or not lo <= value <= hi:
        raise bad_request(f"{key} must be a number between {lo:g} and {hi:g}", param=key)


def model_of(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("you must provide a model parameter", param="model")
    return model


def stream_flag(body: dict[str, Any]) -> bool:
    stream = body.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise bad_request("stream must be a boolean", param="stream")
    return stream


def check_openai(body: dict[str, Any], endpoint: Endpoint) -> None:
    if endpoint is Endpoint.CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad_request("messages must be a non-empty array", param="messages")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in _ROLES:
                raise bad_request(
                    f"messages[{i}] must be an object with a valid role", param=f"messages[{i}]"
                )
    elif endpoint is Endpoint.TEXT:
        if not isinstance(body.get("prompt"), str | list):
            raise bad_request("prompt must be a string or an array", param="prompt")
    else:
        value = body.get("input")
        if not isinstance(value, str | list) or (isinstance(value, list) and not value):
            raise bad_request("input must be a non-empty string or array", param="input")
    for key in ("max_tokens", "max_completion_tokens", "n"):
        _positive_int(body, key)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_request("stream_options must be an object", param="stream_options")
