"""Liveness, readiness and metrics: no authentication, no upstream calls."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import PlainTextResponse, Response

from gateway.api.deps import PipelineDep

router = APIRouter(tags=["health"])


@router.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/ready")
async def ready(pipeline: PipelineDep) -> Response:
    if not pipeline.dispatcher.providers:
        return PlainTextResponse('{"status":"no models configured"}', 503, media_type="application/json")
    return PlainTextResponse('{"status":"ready"}', media_type="application/json")


@router.get("/metrics")
async def metrics(pipeline: PipelineDep) -> Response:
    return PlainTextResponse(pipeline.metrics.render(), media_type="text/plain; version=0.0.4")
