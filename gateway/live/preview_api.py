"""The dry run's preview over HTTP: the options a client sends (checked), the two sides it compares
(the running snapshot, or the newest stored version when this replica is behind, against the proposed
config) and the response's shape for OpenAPI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.errors import bad_request
from gateway.live.preview import (
    DEFAULT_LOGGED,
    MAX_LOGGED,
    MAX_SAMPLES,
    PreviewError,
    Side,
    Source,
    build_preview,
)
from gateway.live.runtime import LiveConfig
from gateway.live.service import DryRun


class PreviewOptions(BaseModel):
    """`preview` in the dry run's body."""

    model_config = ConfigDict(extra="forbid")

    route: str | None = Field(None, description="One route; default: every route the change affects")
    limit: int = Field(DEFAULT_LOGGED, ge=1, le=MAX_LOGGED, description="Logged requests per route")
    prompts: list[str | list[dict[str, Any]]] | None = Field(
        None,
        max_length=MAX_SAMPLES,
        description="Sample prompts (strings or chat message lists) instead of the logged requests",
    )
    completion_tokens: int | None = Field(
        None, ge=1, le=1_000_000, description="Assumed per sample prompt; default: the route's median"
    )


Preview = Callable[[DryRun, Mapping[str, Any] | None], Awaitable[dict[str, Any]]]


def previewer(live: LiveConfig, sessions: async_sessionmaker[AsyncSession] | None) -> Preview:
    """`app.state.config_preview`: the preview of a valid dry run."""

    async def preview(dry: DryRun, options: Mapping[str, Any] | None) -> dict[str, Any]:
        try:
            opts = PreviewOptions.model_validate(options or {})
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in ("preview", *err["loc"]))
            raise bad_request(f"{where}: {err['msg']}", param=where) from None
        running = live.current
        before = (
            Side.from_snapshot(running)
            if dry.base_version == running.version
            else Side.priced(dry.base_config, live.price_map)
        )
        proposed = dry.validation.config
        assert proposed is not None  # previewed only when valid
        try:
            return await build_preview(
                sessions,
                before,
                Side.priced(proposed, live.price_map),
                route=opts.route,
                limit=opts.limit,
                prompts=opts.prompts,
                completion_tokens=opts.completion_tokens,
            )
        except PreviewError as exc:
            raise bad_request(str(exc), param="preview") from None

    return preview


# -- the response, for OpenAPI ------------------------------------------------------------------

_USD = "Exact decimal USD"


class TierShare(BaseModel):
    requests: int
    share: float = Field(description="Of the requests previewed (0..1, 4 decimals)")


class CandidateShare(BaseModel):
    tier: str
    requests: int
    share: float = Field(description="Of the requests previewed (0..1, 4 decimals)")
    cost_usd: str | None = Field(description=f"{_USD}; null: the candidate has no price", examples=["0.0123"])


class SidePreview(BaseModel):
    tiers: dict[str, TierShare] = Field(description="Per tier of the route's candidates, cheapest first")
    candidates: dict[str, CandidateShare] = Field(description="Per candidate, in the route's order")
    priced_requests: int
    unpriced_requests: int = Field(description="Sent to a candidate without a price: not in the cost")
    unroutable_requests: int = Field(description="Sample prompts this config's planner refuses (400)")
    cost_usd: str = Field(description=f"{_USD}: the priced requests' total", examples=["1.2345"])
    cost_per_request_usd: str | None = Field(description=f"{_USD} per priced request; null: none priced")


class PreviewDelta(BaseModel):
    tiers: dict[str, float] = Field(description="Share after minus share before, per tier")
    cost_usd: str = Field(description=f"{_USD}, after minus before (signed)", examples=["-0.42"])
    cost_per_request_usd: str | None
    cost_change_pct: float | None = Field(description="Null when partial or when before cost nothing")
    partial: bool = Field(description="Some requests are unpriced on a side: the costs leave them out")


class SamplePlacement(BaseModel):
    difficulty: float | None
    prompt_tokens: int
    before: str | None = Field(description="Candidate before; null: no such route, or refused")
    after: str | None


class RoutePreview(BaseModel):
    route: str
    requests: int = Field(description="Requests previewed (the same on both sides)")
    skipped_without_difficulty: int = Field(description="Logged with no difficulty: cannot be replayed")
    changed_requests: int = Field(
        description="Requests whose first candidate differs after the change (all: route added or removed)"
    )
    completion_tokens_assumed: int | None = Field(description="Per sample prompt; null for logged requests")
    before: SidePreview | None = Field(description="Null: the route is new")
    after: SidePreview | None = Field(description="Null: the route is removed")
    delta: PreviewDelta | None
    samples: list[SamplePlacement] | None = Field(description="Per sample prompt, in order; null when logged")


class PreviewOut(BaseModel):
    """What a config change would do to routing and cost (gateway.live.preview)."""

    source: Source
    routes: list[RoutePreview]
