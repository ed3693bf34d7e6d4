"""Measuring routing: clients rate their requests (`POST /v1/feedback`, any key), admins read the
quality estimate (`GET /admin/routing/quality`, master key). The work is in gateway.quality."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from gateway.api.admin import Session, reject_nul, require_master
from gateway.api.deps import PrincipalDep
from gateway.api.openapi_schemas import ADMIN_ERRORS, error_responses
from gateway.errors import bad_request
from gateway.quality.feedback import FeedbackIn, FeedbackOut, rate
from gateway.quality.report import quality_rows

# The estimate's window when none is given.
DEFAULT_DAYS = 30

feedback_router = APIRouter(tags=["feedback"])
admin_router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_master), Depends(reject_nul)],
    responses=ADMIN_ERRORS,
)


@feedback_router.post(
    "/v1/feedback",
    response_model=FeedbackOut,
    summary="Rate one of your requests",
    responses=error_responses(401, 404, 503),
)
async def post_feedback(body: FeedbackIn, principal: PrincipalDep, session: Session) -> FeedbackOut:
    return await rate(session, principal, body)


@admin_router.get("/routing/quality", summary="Judged quality of the cheaper tiers, and the cost saved")
async def get_quality(
    session: Session,
    team_id: str | None = None,
    route: str | None = None,
    start: Annotated[date | None, Query(description="First UTC day, inclusive")] = None,
    end: Annotated[date | None, Query(description="Last UTC day, inclusive (default today)")] = None,
) -> dict[str, Any]:
    last = end or datetime.now(UTC).date()
    first = start or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise bad_request("start is after end", param="start")
    rows = await quality_rows(
        session,
        start=datetime.combine(first, time(), UTC),
        end=datetime.combine(last + timedelta(days=1), time(), UTC),
        team_id=team_id,
        route=route,
    )
    return {"start": first.isoformat(), "end": last.isoformat(), "rows": [r.to_json() for r in rows]}
