"""Liveness, readiness and metrics: no authentication, no upstream calls."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.responses import PlainTextResponse, Response

from gateway.api.deps import PipelineDep

router = APIRouter(tags=["health"])

READY_DESCRIPTION = """Whether this process can serve requests now, with each dependency's state.

Answered from states a background task probes every `SWITCHYARD_HEALTH_PROBE_INTERVAL_S` (1 s):
it never waits on a dead dependency.

- **200 `ready`**: models configured; PostgreSQL, Redis (when configured) and the spool all answer.
- **200 `degraded`**: it serves, with less: PostgreSQL down but the spool writable (records wait
  there; virtual keys not cached yet answer 503 `auth_store_unavailable`), Redis down with
  `limits_fail_mode=open` (per-process limits), or the spool not writable while PostgreSQL is up.
- **503 `not_ready`**: it cannot: no models configured; a local model still loading (start-up, seconds)
  or failed to load; PostgreSQL answers with an out-of-date schema; Redis down with
  `limits_fail_mode=closed`; or PostgreSQL down and the spool not writable.

`config_version`: the routing config version this process runs (the same number every /v1 response
carries in `x-switchyard-config-version`).

`checks.database.state`: ok | down | schema_outdated; `checks.redis.state`: ok | down | disabled;
`checks.spool.state`: ok | not_writable | full; `checks.models.state`: ok | none | loading | failed,
with `checks.models.local` giving each local model's own state (`load_s`, `elapsed_s` or `error`).
"""


@router.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/health/ready",
    description=READY_DESCRIPTION,
    responses={503: {"description": "not_ready: the gateway cannot serve requests now"}},
)
async def ready(request: Request) -> Response:
    code, body = request.app.state.readiness.report()
    return JSONResponse(body, code)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(pipeline: PipelineDep) -> Response:
    return PlainTextResponse(pipeline.metrics.render(), media_type="text/plain; version=0.0.4")
