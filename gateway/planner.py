"""The seam where `routing/` decides: which candidates a routed name tries, in which order, and why."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.auth import Principal
from gateway.config import GatewayConfig, Route
from gateway.errors import bad_request
from gateway.pricing import TokenPrice
from providers.deployment import TIER_RANK
from routing.policy import Candidate, RouteContext, Router, RouteSpec

log = logging.getLogger("switchyard.routing")
MIN_TIER_HEADER = "x-switchyard-min-tier"
# With neither knob set, the strongest tier takes the hardest 30% of prompts: a predictable share,
# where the relative quality knob is steep with the current artifact (0.9 sends nearly all to it).
DEFAULT_STRONG_FRACTION = 0.3


@dataclass(slots=True)
class RoutePlan:
    names: list[str]
    explain: str
    difficulty: float | None = None
    # Token counts the plan already took (routing.features.Features.token_counts), for reuse.
    token_counts: Mapping[str, int] | None = None


class RoutePlanner(Protocol):
    def plan(
        self, name: str, route: Route, body: dict[str, Any], headers: dict[str, str], principal: Principal
    ) -> RoutePlan: ...


class InOrderPlanner:
    """Candidates as configured; the dispatcher skips cooled-down ones, so the first healthy one serves."""

    def plan(
        self, name: str, route: Route, body: dict[str, Any], headers: dict[str, str], principal: Principal
    ) -> RoutePlan:
        return RoutePlan(list(route.candidates), f"route={name}; policy=first-healthy")


class LearnedPlanner:
    """The learned router: difficulty per prompt, cost per candidate, the route's quality knob."""

    def __init__(self, router: Router, config: GatewayConfig, prices: dict[str, TokenPrice | None]) -> None:
        self.router = router
        first = {}
        for dep in config.models:
            first.setdefault(dep.name, dep)
        self._candidates: dict[str, list[Candidate]] = {}
        for route_name, route in config.routes.items():
            cands = []
            for cand in route.candidates:
                dep = first[cand]
                price = prices.get(dep.id)
                cands.append(
                    Candidate(
                        name=cand,
                        tier=dep.tier,
                        input_per_mtok=float(price.input * 1_000_000) if price else None,
                        output_per_mtok=float(price.output * 1_000_000) if price else None,
                    )
                )
            self._candidates[route_name] = cands
        # Routes are fixed for the planner's life (teams' overrides come per request, in the context).
        self._specs = {name: _spec(name, route) for name, route in config.routes.items()}

    def plan(
        self, name: str, route: Route, body: dict[str, Any], headers: dict[str, str], principal: Principal
    ) -> RoutePlan:
        min_tier = headers.get(MIN_TIER_HEADER)
        if min_tier is not None and min_tier not in TIER_RANK:
            raise bad_request(
                f"{MIN_TIER_HEADER} must be one of {', '.join(TIER_RANK)}", param=MIN_TIER_HEADER
            )
        overrides = (principal.team_routing or {}).get(name) or principal.team_routing or {}
        pressure = 0.0
        if principal.team_budget_usd and principal.team_spent_usd is not None:
            pressure = float(principal.team_spent_usd / principal.team_budget_usd)
        ctx = RouteContext(
            min_tier=min_tier,
            max_tier=overrides.get("max_tier"),
            quality=overrides.get("quality"),
            strong_fraction=overrides.get("strong_fraction"),
            budget_pressure=pressure,
        )
        decision = self.router.decide(body, self._specs[name], self._candidates[name], ctx)
        return RoutePlan(
            [c.name for c in decision.candidates],
            f"route={name}; {decision.explain()}",
            decision.difficulty,
            decision.token_counts,
        )


def _spec(name: str, route: Route) -> RouteSpec:
    strong_fraction = route.strong_fraction
    if route.quality is None and strong_fraction is None:
        strong_fraction = DEFAULT_STRONG_FRACTION
    return RouteSpec(
        name=name, quality=route.quality, strong_fraction=strong_fraction, tools_min_tier=route.tools_min_tier
    )


def build_planner(config: GatewayConfig, prices: dict[str, TokenPrice | None]) -> RoutePlanner:
    if not config.routes:
        return InOrderPlanner()
    try:
        router = Router.load()
    except (OSError, ValueError, KeyError) as exc:
        log.warning("router artifact unavailable (%s): routes try their candidates in order", exc)
        return InOrderPlanner()
    return LearnedPlanner(router, config, prices)
