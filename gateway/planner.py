"""The seam where `routing/` decides: which candidates a routed name tries, in which order, and why."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.auth import Principal
from gateway.config import GatewayConfig, Route
from gateway.errors import bad_request, clip
from gateway.pricing import TokenPrice
from providers.deployment import TIER_RANK, Deployment
from routing.capabilities import Need, Unroutable, lacks, missing, served_by
from routing.overrides import RouteOverride
from routing.policy import Candidate, RouteContext, Router, RouteSpec

log = logging.getLogger("switchyard.routing")
MIN_TIER_HEADER = "x-switchyard-min-tier"
# With neither knob set, the strongest tier takes the hardest 30% of prompts: a predictable share,
# where the relative quality knob is steep with the current artifact (0.9 sends nearly all to it).
DEFAULT_STRONG_FRACTION = 0.3
NO_OVERRIDES = RouteOverride()


@dataclass(slots=True)
class RoutePlan:
    names: list[str]
    explain: str
    difficulty: float | None = None
    # Token counts the plan already took (routing.features.Features.token_counts), for reuse.
    token_counts: Mapping[str, int] | None = None


class RoutePlanner(Protocol):
    def plan(
        self,
        name: str,
        route: Route,
        body: dict[str, Any],
        headers: dict[str, str],
        principal: Principal,
        needs: Sequence[Need] = (),
    ) -> RoutePlan: ...

    def first_at(self, name: str, difficulty: float | None, prompt_tokens: int) -> str | None:
        """The candidate `plan` puts first for a request of route `name` known by its recorded
        difficulty and prompt length, as a key without team overrides sends it (no tools, no
        min-tier header); None when the planner needs a difficulty and none was recorded."""
        ...


def direct(name: str, deployments: Sequence[Deployment], needs: Sequence[Need]) -> str:
    """The `x-switchyard-route` of a model asked for by name. It serves the request only if one of
    its deployments can: a model without tools would answer a tool call with plain text, so that is
    a 400 here instead; deployments passed over for it are named."""
    if not needs:
        return "direct"
    lacking = missing(needs, [d.capabilities for d in deployments])
    if lacking is not None:
        what, param = lacking
        raise bad_request(f"{clip(name)} does not support {what}", param=param)
    skipped = [d for d in deployments if not served_by(needs, d.capabilities)]
    if not skipped:
        return "direct"
    return "direct; skipped=" + ",".join(f"{d.id}:{lacks(needs, d.capabilities)}" for d in skipped)


def _name_capabilities(config: GatewayConfig) -> dict[str, frozenset[str]]:
    """What a name can do: what any of its deployments can (the dispatcher skips those that cannot)."""
    caps: dict[str, frozenset[str]] = {}
    for dep in config.models:
        caps[dep.name] = caps.get(dep.name, frozenset()) | dep.capabilities
    return caps


class InOrderPlanner:
    """Candidates as configured, less those lacking a capability the request needs; the dispatcher
    skips cooled-down ones, so the first healthy one serves."""

    def __init__(self, config: GatewayConfig) -> None:
        self._caps = _name_capabilities(config)
        self._first = {name: route.candidates[0] for name, route in config.routes.items()}

    def plan(
        self,
        name: str,
        route: Route,
        body: dict[str, Any],
        headers: dict[str, str],
        principal: Principal,
        needs: Sequence[Need] = (),
    ) -> RoutePlan:
        explain = f"route={name}; policy=first-healthy"
        if not needs:
            return RoutePlan(list(route.candidates), explain)
        names = [c for c in route.candidates if served_by(needs, self._caps[c])]
        if not names:
            what, param = missing(needs, [self._caps[c] for c in route.candidates]) or ("", None)
            raise bad_request(f"no candidate of `{name}` supports {what}", param=param)
        if len(names) < len(route.candidates):
            skipped = [c for c in route.candidates if c not in names]
            explain += "; skipped=" + ",".join(f"{c}:{lacks(needs, self._caps[c])}" for c in skipped)
        return RoutePlan(names, explain)

    def first_at(self, name: str, difficulty: float | None, prompt_tokens: int) -> str | None:
        return self._first[name]


class LearnedPlanner:
    """The learned router: difficulty per prompt, cost per candidate, the route's quality knob."""

    def __init__(self, router: Router, config: GatewayConfig, prices: dict[str, TokenPrice | None]) -> None:
        self.router = router
        first = {}
        for dep in config.models:
            first.setdefault(dep.name, dep)
        caps = _name_capabilities(config)
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
                        capabilities=caps[cand],
                    )
                )
            self._candidates[route_name] = cands
        # Routes are fixed for the planner's life (teams' overrides come per request, in the context).
        self._specs = {name: _spec(name, route) for name, route in config.routes.items()}

    def plan(
        self,
        name: str,
        route: Route,
        body: dict[str, Any],
        headers: dict[str, str],
        principal: Principal,
        needs: Sequence[Need] = (),
    ) -> RoutePlan:
        min_tier = headers.get(MIN_TIER_HEADER)
        if min_tier is not None and min_tier not in TIER_RANK:
            raise bad_request(
                f"{MIN_TIER_HEADER} must be one of {', '.join(TIER_RANK)}", param=MIN_TIER_HEADER
            )
        team = principal.team_routing
        overrides = team.for_route(name) if team is not None else NO_OVERRIDES
        pressure = 0.0
        if principal.team_budget_usd and principal.team_spent_usd is not None:
            pressure = float(principal.team_spent_usd / principal.team_budget_usd)
        ctx = RouteContext(
            needs=tuple(needs),
            min_tier=min_tier,
            team_min_tier=overrides.min_tier,
            max_tier=overrides.max_tier,
            quality=overrides.quality,
            strong_fraction=overrides.strong_fraction,
            budget_pressure=pressure,
        )
        try:
            decision = self.router.decide(body, self._specs[name], self._candidates[name], ctx)
        except Unroutable as exc:
            raise bad_request(exc.message, param=exc.param) from None
        return RoutePlan(
            [c.name for c in decision.candidates],
            f"route={name}; {decision.explain()}",
            decision.difficulty,
            decision.token_counts,
        )

    def first_at(self, name: str, difficulty: float | None, prompt_tokens: int) -> str | None:
        if difficulty is None:
            return None
        decision = self.router.decide_at(difficulty, prompt_tokens, self._specs[name], self._candidates[name])
        return decision.chosen.name


def _spec(name: str, route: Route) -> RouteSpec:
    strong_fraction = route.strong_fraction
    if route.quality is None and strong_fraction is None:
        strong_fraction = DEFAULT_STRONG_FRACTION
    return RouteSpec(
        name=name, quality=route.quality, strong_fraction=strong_fraction, tools_min_tier=route.tools_min_tier
    )


def build_planner(config: GatewayConfig, prices: dict[str, TokenPrice | None]) -> RoutePlanner:
    if not config.routes:
        return InOrderPlanner(config)
    try:
        router = Router.load(config.router_artifact)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("router artifact unavailable (%s): routes try their candidates in order", exc)
        return InOrderPlanner(config)
    return LearnedPlanner(router, config, prices)
