"""Dependencies shared by the routes: the proxy built at start, and the master-key check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from gateway.errors import GatewayError
from gateway.proxy import Proxy


async def get_proxy(request: Request) -> Proxy:
    return request.app.state.proxy


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None
    return request.headers.get("x-api-key") or request.headers.get("api-key")


async def authenticate(request: Request) -> None:
    expected: bytes | None = request.app.state.master_key
    if expected is None:
        return
    presented = _presented_key(request)
    if presented is None:
        raise GatewayError(
            401,
            "missing API key: send Authorization: Bearer <key>",
            type="authentication_error",
            code="invalid_api_key",
        )
    if not hmac.compare_digest(presented.encode(), expected):
        raise GatewayError(401, "invalid API key", type="authentication_error", code="invalid_api_key")


ProxyDep = Annotated[Proxy, Depends(get_proxy)]
Authenticated = Depends(authenticate)
