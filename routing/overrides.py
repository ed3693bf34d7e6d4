"""A team's routing overrides (the team's `routing` in the admin API), typed and checked.

    {"quality": 0.8, "max_tier": "medium", "routes": {"auto-code": {"strong_fraction": 0.5}}}

The top-level values apply to every routed name; `routes` holds values for one routed name, which
win over the top-level ones (the knob, `quality` or `strong_fraction`, as a pair; each tier bound on
its own). Unknown keys, values out of range, tier names that do not exist and both knobs at once are
refused, so a typo is an error at write time and not an override that silently does nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_serializer, model_validator

from providers.deployment import TIER_RANK, Tier

# Strict: a string or a boolean is a wrong type, not a number to coerce.
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)]
RouteName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]


class RouteOverride(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    quality: Fraction | None = Field(
        None,
        description="Quality knob, 0..1: the cheapest candidate whose predicted success is at least this "
        "share of the best one's (replaces the route's knob)",
    )
    strong_fraction: Fraction | None = Field(
        None, description="Share of prompts, 0..1, the strongest tier takes (instead of `quality`)"
    )
    min_tier: Tier | None = Field(None, description="Lowest tier to route to; none in the route is a 400")
    max_tier: Tier | None = Field(None, description="Highest tier to route to; none in the route is a 400")

    @model_validator(mode="after")
    def _consistent(self) -> Any:
        if self.quality is not None and self.strong_fraction is not None:
            raise ValueError("set quality or strong_fraction, not both")
        _check_range(self.min_tier, self.max_tier)
        return self

    @model_serializer(mode="wrap")
    def _unset_left_out(self, handler: Any) -> dict[str, Any]:
        # Stored and shown without the keys nobody set.
        return {k: v for k, v in handler(self).items() if v is not None and v != {}}


class TeamRouting(RouteOverride):
    routes: dict[RouteName, RouteOverride] = Field(
        default_factory=dict, description="Overrides for one routed name, over the team-wide ones"
    )

    @model_validator(mode="after")
    def _routes_consistent(self) -> Any:
        for name in self.routes:
            merged = self.for_route(name)
            try:
                _check_range(merged.min_tier, merged.max_tier)
            except ValueError as exc:
                raise ValueError(f"routes.{name}: {exc}") from None
        return self

    def for_route(self, name: str) -> RouteOverride:
        own = self.routes.get(name)
        if own is None:
            return self
        knob = own if own.quality is not None or own.strong_fraction is not None else self
        return RouteOverride.model_construct(
            quality=knob.quality,
            strong_fraction=knob.strong_fraction,
            min_tier=own.min_tier or self.min_tier,
            max_tier=own.max_tier or self.max_tier,
        )


def _check_range(min_tier: str | None, max_tier: str | None) -> None:
    if min_tier is not None and max_tier is not None and TIER_RANK[min_tier] > TIER_RANK[max_tier]:
        raise ValueError(f"min_tier {min_tier} is above max_tier {max_tier}")
