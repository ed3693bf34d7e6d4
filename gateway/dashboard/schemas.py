"""The shapes of /dashboard/api answers (also their CSV columns: a row model's fields, in order).

Money is an exact decimal string in USD ('0.0123'), as in /admin/spend; durations are milliseconds.
Every answer carries the range it covers and `rows`; `?format=csv` sends the rows as CSV instead.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class RangeOut(BaseModel):
    start: str = Field(description="First local day, inclusive (YYYY-MM-DD)")
    end: str = Field(description="Last local day, inclusive")
    tz: str = Field(description="The reporting time zone (IANA)")


class _Page(BaseModel):
    range: RangeOut


class _Sums(BaseModel):
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = Field(description="Prompt tokens read from a prompt cache")
    cache_write_tokens: int = Field(description="Prompt tokens written to a prompt cache (any lifetime)")
    cost_usd: str


class TotalsRow(_Sums):
    period: Literal["current", "previous"]
    start: str
    end: str
    tz: str
    refusals: int = Field(description="Requests refused by a rate limit or budget (429)")
    savings_usd: str = Field(description="Cost on each route's strongest candidate minus the cost")


class TotalsPage(_Page):
    rows: list[TotalsRow] = Field(description="This range, then the same number of days just before it")


class SpendRow(_Sums):
    bucket: str = Field(description="Local day (YYYY-MM-DD) or hour (ISO 8601 with the zone's offset)")
    ts: int = Field(description="The bucket's first instant, Unix seconds")
    group: str = Field(
        description="Team id, key id, model or tier ('' for none, and for by=total; '(other)': the "
        "groups past `limit`)"
    )
    label: str = Field(description="The group's name (team and key names), else the group")


class SpendPage(_Page):
    bucket: Literal["hour", "day"]
    by: Literal["total", "team", "key", "model", "tier"]
    axis: list[int] = Field(description="Every bucket's first instant in the range (Unix seconds)")
    rows: list[SpendRow] = Field(description="Non-empty bucket x group cells, by bucket then group")


class TopRow(_Sums):
    id: str
    label: str
    share: float = Field(description="Share of the range's cost, 0..1")


class TopPage(_Page):
    by: Literal["team", "key", "model"]
    rows: list[TopRow]


class LatencyRow(BaseModel):
    model: str | None = Field(description="None: all models together")
    requests: int = Field(description="Successful requests measured")
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None


class LatencyPage(_Page):
    rows: list[LatencyRow]


class ErrorRow(BaseModel):
    error_type: str = Field(description="The error's type, else http_<status>")
    kind: Literal["error", "refusal"]
    requests: int


class ErrorPage(_Page):
    rows: list[ErrorRow]


class RoutingRow(BaseModel):
    dimension: Literal["tier", "difficulty"]
    value: str | None = Field(description="Tier (None: not routed to a tier), or difficulty bucket 'a-b'")
    requests: int
    share: float = Field(description="Of all requests (tier) or of routed requests (difficulty), 0..1")


class RoutingPage(_Page):
    rows: list[RoutingRow]


class SavingsRow(BaseModel):
    model: str | None = Field(
        description="The deployment that answered, else the name asked for (a refused request)"
    )
    requests: int
    cost_usd: str
    baseline_cost_usd: str = Field(
        description="What each request would have cost on its route's strongest candidate (a request "
        "that named a model: its own cost), as recorded with it"
    )
    savings_usd: str
    unpriced: int = Field(description="Requests with no known cost or baseline: no saving claimed")


class SavingsPage(_Page):
    rows: list[SavingsRow] = Field(description="Per model, the largest saving first")


class BudgetRow(BaseModel):
    subject: Literal["team", "key"]
    id: str
    label: str
    period: str = Field(description="daily, weekly, monthly or total (UTC periods, as the limiter's)")
    period_start: str
    period_end: str | None
    limit_usd: str | None = Field(description="None: no budget of its own")
    spent_usd: str
    remaining_usd: str | None
    projected_usd: str | None = Field(description="Spend at the period's end at the rate so far")
    binding: Literal["team", "key"] | None = Field(description="Which budget runs out first for it")
    effective_remaining_usd: str | None = Field(description="What it may still spend, all budgets counted")


class BudgetPage(BaseModel):
    team_id: str
    rows: list[BudgetRow] = Field(description="The team, then its live keys")


class RequestRow(BaseModel):
    request_id: str
    ts: str = Field(description="Arrival time in the reporting zone (ISO 8601)")
    team_id: str | None
    key_id: str | None
    requested_model: str
    route: str | None
    deployment: str | None
    tier: str | None
    difficulty: float | None
    status: int
    error_type: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = Field(description="Prompt tokens read from a prompt cache")
    cache_write_5m_tokens: int = Field(description="Prompt tokens written to a 5-minute prompt cache")
    cache_write_1h_tokens: int = Field(description="Prompt tokens written to a 1-hour prompt cache")
    cost_usd: str | None
    latency_ms: float
    ttft_ms: float | None
    streamed: bool
    fallbacks: int


class RequestPage(_Page):
    rows: list[RequestRow] = Field(description="Newest first; never any prompt or answer text")
    next_cursor: str | None


class TeamRow(BaseModel):
    id: str
    name: str
    budget_usd: str | None
    budget_period: str | None


class TeamList(BaseModel):
    rows: list[TeamRow]


class KeyRow(BaseModel):
    id: str
    name: str | None
    prefix: str = Field(description="The key's first characters, never the key")
    team_id: str
    revoked: bool
    budget_usd: str | None
    budget_period: str | None


class KeyList(BaseModel):
    rows: list[KeyRow]


class RouteOut(BaseModel):
    name: str
    candidates: list[str]
    quality: float | None
    strong_fraction: float | None


class ModelRow(BaseModel):
    name: str
    id: str
    provider: str
    model: str
    tier: str
    input_per_mtok: str | None = Field(description="USD per million input tokens; None: unknown")
    output_per_mtok: str | None


class ConfigView(BaseModel):
    version: int
    routes: list[RouteOut]
    rows: list[ModelRow] = Field(description="The deployments (no api_base, no keys)")
