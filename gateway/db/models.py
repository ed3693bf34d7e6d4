"""The database schema: teams, API keys, the request log, daily and hourly spend aggregates (with
latency, TTFT and difficulty histograms), the audit log, the routing config's versions and the
Responses API's stored responses.

Every table reads and writes identically on PostgreSQL and SQLite (see gateway.db.types).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db.base import Base
from gateway.db.types import JSONType, Money, NullableJSON, UTCDateTime, utcnow

BUDGET_PERIODS = ("daily", "weekly", "monthly", "total")
_PERIOD_CHECK = "budget_period IS NULL OR budget_period IN ('daily', 'weekly', 'monthly', 'total')"

# CURRENT_TIMESTAMP is UTC and valid on both dialects (now() is not a SQLite function).
_NOW = text("CURRENT_TIMESTAMP")
# SQLite only autoincrements INTEGER PRIMARY KEY, not BIGINT.
_BigId = BigInteger().with_variant(Integer(), "sqlite")


def new_id() -> str:
    return uuid.uuid4().hex


class Team(Base):
    __tablename__ = "teams"
    __table_args__ = (
        CheckConstraint(_PERIOD_CHECK, name="budget_period"),
        # Unique among live teams only, so a soft-deleted team's name can be reused.
        Index(
            "uq_teams_name_live",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    budget_usd: Mapped[Decimal | None] = mapped_column(Money())
    budget_period: Mapped[str | None] = mapped_column(String(16))
    # Start of the current budget period, for periods that do not follow the calendar.
    budget_reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    routing: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Measuring routing (gateway.quality): opt-in prompt capture, kept this many days; the monthly
    # cap on shadow and judge calls (None: no shadowing for this team).
    capture_prompts: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    capture_retention_days: Mapped[int | None] = mapped_column(Integer)
    shadow_budget_usd: Mapped[Decimal | None] = mapped_column(Money())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, server_default=_NOW)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, server_default=_NOW
    )
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint(_PERIOD_CHECK, name="budget_period"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # sha256 hex of the whole key; the key itself is shown once at creation and never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200))
    team_id: Mapped[str] = mapped_column(String(32), ForeignKey("teams.id"), index=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    budget_usd: Mapped[Decimal | None] = mapped_column(Money())
    budget_period: Mapped[str | None] = mapped_column(String(16))
    budget_reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, server_default=_NOW)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, server_default=_NOW
    )
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RequestLog(Base):
    """One row per request (gateway.accounting.record.RequestRecord).

    team_id and key_id carry no foreign keys on purpose: the log is history and must accept every
    record, even for a key or team that was removed since; a rejected row would stall its batch.
    """

    __tablename__ = "request_log"
    __table_args__ = (
        # A team's requests newest first, in the request explorer's keyset order.
        Index("ix_request_log_team_id_ts_request_id", "team_id", "ts", "request_id"),
        Index("ix_request_log_key_id_ts", "key_id", "ts"),
        Index("ix_request_log_ts", "ts"),
        # The config preview's "last N requests of a route".
        Index("ix_request_log_route_ts", "route", "ts"),
    )

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    team_id: Mapped[str | None] = mapped_column(String(32))
    key_id: Mapped[str | None] = mapped_column(String(32))
    requested_model: Mapped[str] = mapped_column(Text)
    route: Mapped[str | None] = mapped_column(Text)
    deployment: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str | None] = mapped_column(Text)
    tier: Mapped[str | None] = mapped_column(String(32))
    difficulty: Mapped[float | None] = mapped_column(Float)
    status: Mapped[int] = mapped_column(Integer)
    error_type: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    cached_tokens: Mapped[int] = mapped_column(Integer)
    # None when no price is known for the deployment; the tokens are still recorded.
    cost_usd: Mapped[Decimal | None] = mapped_column(Money())
    latency_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    streamed: Mapped[bool] = mapped_column(Boolean)
    fallbacks: Mapped[int] = mapped_column(Integer)
    tokens_estimated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # What the same usage would have cost on the route's strongest candidate (its price in the config
    # the request ran on); a direct request's own cost. None when that price (or the cost) is unknown.
    baseline_cost_usd: Mapped[Decimal | None] = mapped_column(Money())
    # "request" (a client's), "shadow" or "judge" (gateway.quality.shadow: billed to the team too).
    kind: Mapped[str] = mapped_column(String(16), default="request", server_default="request")
    # Prompt-cache writes by lifetime, parts of prompt_tokens as cached_tokens (the reads) is.
    cache_write_5m_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cache_write_1h_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A cascade that escalated: cost_usd and the tokens cover both calls, wasted_cost_usd the first.
    escalated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    wasted_cost_usd: Mapped[Decimal | None] = mapped_column(Money())


class DailySpend(Base):
    """Per-day totals, kept up to date by the spend writer in the same transaction as the log rows.

    Absent team, key and tier are stored as '' rather than NULL so that the natural key can be the
    primary key and the ON CONFLICT target on both PostgreSQL and SQLite.
    """

    __tablename__ = "daily_spend"
    __table_args__ = (
        Index("ix_daily_spend_team_id_day", "team_id", "day"),
        Index("ix_daily_spend_key_id_day", "key_id", "day"),
    )

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The deployment that answered, else the requested model.
    model: Mapped[str] = mapped_column(Text, primary_key=True)
    tier: Mapped[str] = mapped_column(String(32), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cached_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Prompt-cache writes of both lifetimes (request_log keeps them apart; their cost is in cost_usd).
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cost_usd: Mapped[Decimal] = mapped_column(Money(), default=Decimal(0), server_default="0")
    errors: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class _Sums:
    """What every hourly and daily rollup sums (gateway.accounting.grains.rollups adds to them, batch by
    batch)."""

    requests: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cached_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Prompt-cache writes of both lifetimes (request_log keeps them apart; their cost is in cost_usd).
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cost_usd: Mapped[Decimal] = mapped_column(Money(), default=Decimal(0), server_default="0")
    # Summed so that baseline - cost is the exact saving: a request whose cost or baseline is unknown
    # adds its cost here (no saving claimed) and counts in `unpriced`.
    baseline_cost_usd: Mapped[Decimal] = mapped_column(Money(), default=Decimal(0), server_default="0")
    unpriced: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Requests that failed (status >= 400 or an error type), and the two refusals among them.
    errors: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    rate_limited: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    budget_refused: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class _HourlySums(_Sums):
    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)


class _DailySums(_Sums):
    day: Mapped[date] = mapped_column(Date, primary_key=True)


class _Histograms:
    latency_hist: Mapped[dict[str, int] | None] = mapped_column(NullableJSON)
    ttft_hist: Mapped[dict[str, int] | None] = mapped_column(NullableJSON)
    difficulty_hist: Mapped[dict[str, int] | None] = mapped_column(NullableJSON)


class HourlySpend(_HourlySums, _Histograms, Base):
    """Per-UTC-hour totals and histograms, kept by the spend writer in the same transaction as the log
    and daily rows: summed over a reporting time zone's hours they give its days exactly
    (gateway.accounting.rollups). This is the finest of four hourly rollups; the three others drop
    dimensions (the key; the team too; all but the team) so that views of a team or of everything
    read far fewer rows: with traffic spread thin over many keys and models, most cells of this one
    hold a request or two, and it grows nearly as fast as the log.

    Absent team, key and tier are '' as in daily_spend. error_type is '' for the requests that
    succeeded, else their error type (`http_<status>` for a failed one that has none): errors by type
    and the refusals (rate_limit_error, budget_exceeded) are rows of their own.

    The histograms (gateway.accounting.histogram) are sparse JSON maps, bucket -> count, NULL when
    empty: `latency_hist` and `ttft_hist` in ms, of the requests that succeeded (so only on the
    error_type '' row; TTFT where one was measured), `difficulty_hist` of the routed requests. In the
    row rather than a row per bucket: most hour cells see a few requests, so a row per bucket wrote
    ~3 rows more per request and made the batch's upserts ~2x as slow; a map is merged (a small
    subquery) only when the cell already exists, and percentiles of any grouping are one GROUP BY
    over json_each / jsonb_each_text, a few hundred rows back whatever the range.
    """

    __tablename__ = "hourly_spend"
    __table_args__ = (
        PrimaryKeyConstraint("hour", "team_id", "key_id", "model", "tier", "error_type"),
        Index("ix_hourly_spend_team_id_hour", "team_id", "hour"),
        Index("ix_hourly_spend_key_id_hour", "key_id", "hour"),
    )

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The deployment that answered, else the requested model.
    model: Mapped[str] = mapped_column(Text, primary_key=True)
    tier: Mapped[str] = mapped_column(String(32), primary_key=True)
    error_type: Mapped[str] = mapped_column(Text, primary_key=True)


class HourlyTeamSpend(_HourlySums, _Histograms, Base):
    """hourly_spend without the key: a team's views."""

    __tablename__ = "hourly_team_spend"
    __table_args__ = (
        PrimaryKeyConstraint("hour", "team_id", "model", "tier", "error_type"),
        Index("ix_hourly_team_spend_team_id_hour", "team_id", "hour"),
    )

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(Text, primary_key=True)
    tier: Mapped[str] = mapped_column(String(32), primary_key=True)
    error_type: Mapped[str] = mapped_column(Text, primary_key=True)


class HourlyModelSpend(_HourlySums, _Histograms, Base):
    """hourly_spend without team and key: the whole gateway by model, tier and error type."""

    __tablename__ = "hourly_model_spend"
    __table_args__ = (PrimaryKeyConstraint("hour", "model", "tier", "error_type"),)

    model: Mapped[str] = mapped_column(Text, primary_key=True)
    tier: Mapped[str] = mapped_column(String(32), primary_key=True)
    error_type: Mapped[str] = mapped_column(Text, primary_key=True)


class HourlyTeamTotals(_HourlySums, Base):
    """Each team's hourly totals (no histograms): the whole gateway by team."""

    __tablename__ = "hourly_team_totals"
    __table_args__ = (PrimaryKeyConstraint("hour", "team_id"),)

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)


class DailyKeyTotals(_DailySums, Base):
    """Per UTC day x key totals: the daily rollups (this and the three below, written with the hourly
    ones) answer the whole days of a range, the hourly ones only its edges, so that a month reads 30
    rows a cell instead of 720 (gateway.accounting.spans). No model here: a key's detail is few rows
    of hourly_spend; this is for ranking and charting keys."""

    __tablename__ = "daily_key_totals"
    __table_args__ = (
        PrimaryKeyConstraint("day", "team_id", "key_id"),
        # Covering: a team's budgets read every key's cost over the period from the index alone
        # (17k rows of the largest team in 3 ms, not 5,000 scattered heap pages).
        Index("ix_daily_key_totals_team_id_day", "team_id", "day", postgresql_include=["key_id", "cost_usd"]),
        Index("ix_daily_key_totals_key_id_day", "key_id", "day"),
    )

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)


class DailyTeamSpend(_DailySums, _Histograms, Base):
    """hourly_team_spend by UTC day."""

    __tablename__ = "daily_team_spend"
    __table_args__ = (
        PrimaryKeyConstraint("day", "team_id", "model", "tier", "error_type"),
        Index("ix_daily_team_spend_team_id_day", "team_id", "day"),
    )

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(Text, primary_key=True)
    tier: Mapped[str] = mapped_column(String(32), primary_key=True)
    error_type: Mapped[str] = mapped_column(Text, primary_key=True)


class DailyModelSpend(_DailySums, _Histograms, Base):
    """hourly_model_spend by UTC day."""

    __tablename__ = "daily_model_spend"
    __table_args__ = (PrimaryKeyConstraint("day", "model", "tier", "error_type"),)

    model: Mapped[str] = mapped_column(Text, primary_key=True)
    tier: Mapped[str] = mapped_column(String(32), primary_key=True)
    error_type: Mapped[str] = mapped_column(Text, primary_key=True)


class DailyTeamTotals(_DailySums, Base):
    """hourly_team_totals by UTC day."""

    __tablename__ = "daily_team_totals"
    __table_args__ = (PrimaryKeyConstraint("day", "team_id"),)

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class ConfigVersion(Base):
    """Every routing config the gateway has run, newest = current (a rollback appends a copy)."""

    __tablename__ = "config_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # As applied, secrets included only as ${ENV} references or encrypted values (gateway.live.secrets).
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    author: Mapped[str] = mapped_column(String(200))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, server_default=_NOW)
    # SHA-256 of the document's canonical JSON: an unchanged document is not a new version.
    hash: Mapped[str] = mapped_column(String(64))


class StoredResponse(Base):
    """A Responses API answer kept for `previous_response_id` and GET /v1/responses/{id}: only the
    key that made it reads it (`owner`), and it is purged past the retention setting.

    `context` is every input item the response answered, the earlier turns' included, so a chain is
    read back with one lookup whatever its length. Both documents are JSON text, never queried
    inside: text holds what a client may send (a NUL in a string) that PostgreSQL's JSONB refuses."""

    __tablename__ = "stored_responses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    context: Mapped[str] = mapped_column(Text)
    response: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=_NOW, index=True
    )


# The measurement tables (feedback, verdicts, captured prompts) live in their own module; imported
# here so that Base, as this module gives it, names every table (migrations and their checks read it).
from gateway.db.labels import CapturedPrompt, Feedback, ShadowVerdict  # noqa: E402, F401
