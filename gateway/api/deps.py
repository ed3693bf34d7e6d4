"""Dependencies shared by the routes: the pipeline built at start, and who is calling."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from gateway.auth import ANONYMOUS, KEY_PREFIX, MASTER, Principal, now_utc
from gateway.errors import GatewayError
from gateway.pipeline.core import Pipeline


async def get_pipeline(request: Request) -> Pipeline:
    return request.app.state.pipeline


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None
    return request.headers.get("x-api-key") or request.headers.get("api-key")


def _unauthorized(message: str) -> GatewayError:
    return GatewayError(401, message, type="authentication_error", code="invalid_api_key")


async def authenticate(request: Request) -> Principal:
    """The master key, a live virtual key, or (on a server with no master key) anonymous."""
    master: bytes | None = request.app.state.master_key
    presented = presented_key(request)
    if presented is None:
        if master is None:
            return ANONYMOUS
        raise _unauthorized("missing API key: send Authorization: Bearer <key>")
    if master is not None and hmac.compare_digest(presented.encode(), master):
        return MASTER
    if presented.startswith(KEY_PREFIX):
        principal = await request.app.state.key_cache.lookup(presented)
        if principal is None:
            raise _unauthorized("invalid or revoked API key")
        if principal.expired(now_utc()):
            raise _unauthorized("API key expired")
        return principal
    if master is None:
        # No auth configured: SDKs insist on sending some key; any non-virtual one is fine.
        return ANONYMOUS
    raise _unauthorized("invalid API key")


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
PrincipalDep = Annotated[Principal, Depends(authenticate)]
