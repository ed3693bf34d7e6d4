"""What measures routing on a team's own traffic (gateway.quality): clients' feedback on their
requests, the judge's verdicts on shadowed ones, and the prompts of teams that opted into capture.

Keyed by the request's id without foreign keys, as the request log itself: a verdict or a rating may
be written before the batched writer has logged its request, and history outlives teams and keys.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db.base import Base
from gateway.db.types import JSONType, Money, UTCDateTime, utcnow

_BigId = BigInteger().with_variant(Integer(), "sqlite")


class Feedback(Base):
    """A client's rating of one of its requests; rating again replaces it."""

    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_team_id_ts", "team_id", "ts"),)

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    team_id: Mapped[str | None] = mapped_column(String(32))
    key_id: Mapped[str | None] = mapped_column(String(32))
    score: Mapped[float] = mapped_column(Float)
    label: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)


class ShadowVerdict(Base):
    """The judge's pairwise verdict on one shadowed request: the cheaper tier's answer against the
    route's strongest candidate's, from the cheaper answer's side (win, tie or loss), both votes kept."""

    __tablename__ = "shadow_verdicts"
    __table_args__ = (
        Index("ix_shadow_verdicts_team_id_ts", "team_id", "ts"),
        Index("ix_shadow_verdicts_route_ts", "route", "ts"),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    team_id: Mapped[str | None] = mapped_column(String(32))
    route: Mapped[str] = mapped_column(Text)
    # The deployment that answered the client (and its tier), and the strongest candidate's.
    deployment: Mapped[str] = mapped_column(Text)
    tier: Mapped[str] = mapped_column(String(32))
    strong_deployment: Mapped[str] = mapped_column(Text)
    judge: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(8))
    # The judge's two answers: [cheaper as A, cheaper as B], each "A", "B", "tie" or null (unreadable).
    votes: Mapped[list[Any]] = mapped_column(JSONType)
    # What the shadow and judge calls cost together.
    cost_usd: Mapped[Decimal | None] = mapped_column(Money())


class CapturedPrompt(Base):
    """A captured request's messages and answer, until `expires_at` (its team's retention then)."""

    __tablename__ = "captured_prompts"
    __table_args__ = (Index("ix_captured_prompts_team_id_ts", "team_id", "ts"),)

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    team_id: Mapped[str | None] = mapped_column(String(32))
    route: Mapped[str | None] = mapped_column(Text)
    messages: Mapped[Any] = mapped_column(JSONType)
    answer: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
