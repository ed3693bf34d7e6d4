"""Reading a request body: bounded in size, parsed once."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from gateway.errors import GatewayError, bad_request


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if not raw:
        raise bad_request("request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"request body exceeds the limit of {limit} bytes", code="request_too_large")
