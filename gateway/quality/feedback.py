"""Clients' feedback on their own requests (`POST /v1/feedback`): a score in [0, 1], optionally a
label and a comment, stored by request id (rating again replaces the rating). A key rates its team's
requests only: another team's request id, or one not logged yet, is a 404 (the same answer, so no
one learns which ids exist); the master key rates any request."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StringConstraints
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.admin.schemas import no_nul
from gateway.auth_store import Principal
from gateway.db.labels import Feedback
from gateway.db.models import RequestLog
from gateway.errors import GatewayError, clip

RequestId = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(no_nul)]
Label = Annotated[str, StringConstraints(max_length=200), AfterValidator(no_nul)]
Comment = Annotated[str, StringConstraints(max_length=4000), AfterValidator(no_nul)]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: RequestId = Field(description="The x-switchyard-request-id of the request rated")
    # Strict: a JSON true or "0.5" is not a score (lax mode would read them as 1.0 and 0.5).
    score: StrictInt | StrictFloat = Field(ge=0, le=1, allow_inf_nan=False, description="0 (bad) to 1 (good)")
    label: Label | None = None
    comment: Comment | None = None


class FeedbackOut(BaseModel):
    object: str = "feedback"
    request_id: str
    score: float
    label: str | None
    comment: str | None
    created_at: datetime


async def rate(session: AsyncSession, principal: Principal, data: FeedbackIn) -> FeedbackOut:
    found = select(RequestLog.team_id, RequestLog.key_id).where(
        RequestLog.request_id == data.request_id, RequestLog.kind == "request"
    )
    row = (await session.execute(found)).first()
    if row is None or (principal.kind != "master" and row.team_id != principal.team_id):
        raise GatewayError(
            404,
            f"no request {clip(data.request_id)!r} of this key's team (a request can be rated once it"
            " is recorded, within a second or so of its answer)",
            type="not_found_error",
            code="request_not_found",
            param="request_id",
        )
    now = datetime.now(UTC)
    await session.merge(
        Feedback(
            request_id=data.request_id,
            ts=now,
            team_id=row.team_id,
            key_id=principal.key_id,
            score=data.score,
            label=data.label,
            comment=data.comment,
        )
    )
    await session.commit()
    return FeedbackOut(
        request_id=data.request_id, score=data.score, label=data.label, comment=data.comment, created_at=now
    )
