"""Dependencies shared by the routes: the pipeline built at start, and who is calling."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from gateway.auth import ANONYMOUS, KEY_PREFIX, MASTER, KeyCache, Principal, now_utc, well_formed
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
    virtual = presented.startswith(KEY_PREFIX)
    if not virtual and master is None:
        # No auth configured: SDKs insist on sending some key; any non-virtual one is fine.
        return ANONYMOUS
    cache: KeyCache = request.app.state.key_cache
    well = virtual and well_formed(presented)
    # A cached live key needs no lookup, so an address over its failure limit (a NAT shared with
    # whoever floods) still gets through with one.
    principal = cache.cached(presented) if well else None
    if principal is None:
        client = request.client.host if request.client is not None else ""
        # Every attempt costs a token up front (concurrent ones cannot all slip past one check) and a
        # good key gets it back; joining a read already under way for the same key costs nothing, so
        # a burst with a key not cached yet is one charge, not one per request.
        charged = not (well and cache.loading(presented))
        if charged:
            cache.failures.charge(client)
        if well:
            try:
                principal = await cache.lookup(presented)
            except GatewayError:
                if charged:
                    cache.failures.refund(client)  # the key store is down: not the caller's failure
                raise
        if principal is None:
            raise _unauthorized("invalid or revoked API key" if well else "invalid API key")
        if charged:
            cache.failures.refund(client)
    if principal.expired(now_utc()):
        raise _unauthorized("API key expired")
    return principal


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
PrincipalDep = Annotated[Principal, Depends(authenticate)]
