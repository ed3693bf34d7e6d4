"""Liveness, readiness and metrics: no authentication, no upstream calls."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import PlainTextResponse, Response

from gateway.api.deps import ProxyDep

router = APIRouter(tags=["health"])


@router.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/ready", responses={503: {"description": "No models configured"}})
async def ready(proxy: ProxyDep) -> Response:
    if not proxy.dispatcher.providers:
        return PlainTextResponse('{"status":"no models configured"}', 503, media_type="application/json")
    return PlainTextResponse('{"status":"ready"}', media_type="application/json")


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(proxy: ProxyDep) -> Response:
    return PlainTextResponse(proxy.metrics.render(), media_type="text/plain; version=0.0.4")
