"""Routing policy: which of a route's candidates serves a request, and the fallback ladder.

The gateway's seam (no I/O; build once at start, call per request):

    router = Router.load()                       # reads routing/artifacts/router-v1.npz once
    decision = router.decide(body, RouteSpec(name="auto", quality=0.9), candidates, ctx)
    decision.candidates   # ordered: [chosen, then the fallback ladder upward]
    decision.explain()    # value for the `x-switchyard-route` header (ASCII, one line)
    router.decide_at(difficulty, prompt_tokens, spec, candidates)  # a logged request, replayed

- `Candidate`: deployment name, tier (local < small < medium < large), prices per million tokens
  and capabilities; `Candidate.from_deployment(d)` builds one from `providers.deployment.Deployment`.
- `RouteSpec`: the route's config: `quality` (0..1) or `strong_fraction` (0..1), and admin pins
  (`tools_min_tier`, budget-pressure knobs).
- `RouteContext`: per request: what the body needs (`routing.capabilities.needs_of`), team
  overrides (`quality`, `strong_fraction`, `min_tier`, `max_tier`), the minimum tier asked for in
  `x-switchyard-min-tier`, and `budget_pressure` (share of the team's budget already used, 0..1).

How a candidate is chosen:
0. Candidates lacking a capability the request needs are dropped (and named in the explanation);
   if none is left, `Unroutable` (the gateway answers 400 naming the capability).
1. Pins narrow the ladder: at least `min_tier` (header) and the team's `min_tier`, at most the
   team's `max_tier`; a pin no candidate meets is `Unroutable` too, never a quiet downgrade. Then,
   when the request has tools, at least `tools_min_tier`: the admin's preference, so when no
   candidate reaches it the strongest one in range is taken instead.
2. Quality knob: the classifier gives each tier a success probability for this prompt; a candidate
   qualifies when its probability is at least `quality` x the best eligible one's. The lowest
   qualifying tier wins (tiers are the price ladder), the cheapest by estimated cost within it.
   The knob is relative on purpose: on a prompt no model is likely to solve, paying for the
   strongest buys little.
3. `strong_fraction` instead: the strongest eligible tier takes the prompts whose difficulty is in
   the top `strong_fraction` of the training prompts (a threshold calibrated on the artifact's
   score distribution); the others choose among the cheaper tiers with the quality knob.
4. Budget pressure: past `budget_soft_start` of the budget used, the quality target (or the strong
   fraction) shrinks linearly, by up to `budget_relief` of it at 100%, so a team near its budget
   leans cheaper instead of being cut off.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.deployment import ALL_CAPABILITIES, TIER_RANK, Deployment
from routing.artifact import RouterArtifact, load
from routing.capabilities import Need, Unroutable, lacks, missing, served_by
from routing.classifier import DifficultyModel, Prediction
from routing.cost import CostModel
from routing.features import Features, extract

DEFAULT_QUALITY = 0.9
_HEADER_UNSAFE = re.compile(r"[^A-Za-z0-9._:/@+-]")


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    tier: str
    # None: price unknown (the cost is then reported as unknown, never as $0).
    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    capabilities: frozenset[str] = ALL_CAPABILITIES

    @classmethod
    def from_deployment(cls, deployment: Deployment) -> Candidate:
        """Prices from the deployment's config; a local deployment with none costs nothing."""
        name, tier, caps = deployment.name, deployment.tier, frozenset(deployment.capabilities)
        price = deployment.price
        if price is not None:
            return cls(name, tier, price.input_per_mtok, price.output_per_mtok, caps)
        if deployment.provider == "local":
            return cls(name, tier, 0.0, 0.0, caps)
        return cls(name, tier, capabilities=caps)

    @property
    def rank(self) -> int:
        return TIER_RANK[self.tier]


@dataclass(frozen=True, slots=True)
class RouteSpec:
    name: str = "auto"
    quality: float | None = None
    strong_fraction: float | None = None
    tools_min_tier: str | None = "medium"
    budget_soft_start: float = 0.5
    budget_relief: float = 0.3


@dataclass(frozen=True, slots=True)
class RouteContext:
    needs: tuple[Need, ...] = ()
    min_tier: str | None = None  # x-switchyard-min-tier
    team_min_tier: str | None = None
    max_tier: str | None = None  # the team's
    quality: float | None = None
    strong_fraction: float | None = None
    budget_pressure: float = 0.0


@dataclass(frozen=True)
class Decision:
    candidates: tuple[Candidate, ...]
    prediction: Prediction
    costs: Mapping[str, float | None]
    mode: str  # "quality" or "strong_fraction"
    target: float  # the quality target or strong fraction actually applied
    reason: str
    pins: tuple[str, ...] = field(default_factory=tuple)
    budget_pressure: float = 0.0
    tiers: tuple[str, ...] = ()  # every tier the route offered, for the explanation
    token_counts: Mapping[str, int] = field(default_factory=dict)  # see Features.token_counts
    # Candidates dropped for lacking a capability the request needs: (name, "tools+vision").
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def chosen(self) -> Candidate:
        return self.candidates[0]

    @property
    def difficulty(self) -> float:
        return self.prediction.difficulty

    @property
    def success(self) -> dict[str, float]:
        return self.prediction.success

    @property
    def estimated_cost_usd(self) -> float | None:
        return self.costs[self.chosen.name]

    def explain(self) -> str:
        tiers = self.tiers or tuple(dict.fromkeys(c.tier for c in self.candidates))
        parts = [
            f"tier={self.chosen.tier}",
            f"model={_header_safe(self.chosen.name)}",
            f"difficulty={self.difficulty:.2f}",
            "p=" + ",".join(f"{t}:{self.success[t]:.2f}" for t in tiers),
            f"{'q' if self.mode == 'quality' else 'sf'}={self.target:.2f}",
            f"reason={self.reason}",
        ]
        if self.pins:
            parts.append("pins=" + ",".join(self.pins))
        if self.skipped:
            parts.append("skipped=" + ",".join(f"{_header_safe(n)}:{why}" for n, why in self.skipped[:4]))
        if self.budget_pressure > 0:
            parts.append(f"budget={self.budget_pressure:.2f}")
        if len(self.candidates) > 1:
            parts.append("fallback=" + ">".join(_header_safe(c.name) for c in self.candidates[1:4]))
        cost = self.estimated_cost_usd
        parts.append("est_usd=unknown" if cost is None else f"est_usd={cost:.6f}")
        return "; ".join(parts)


def _header_safe(text: str) -> str:
    return _HEADER_UNSAFE.sub("_", text)[:64]


def _clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return max(low, min(high, value))


class Router:
    """Features + classifier + cost + policy; immutable after construction, safe to share."""

    def __init__(self, artifact: RouterArtifact) -> None:
        self.model = DifficultyModel(artifact)
        self.cost = CostModel.from_coef(artifact.completion_coef)
        self.meta = artifact.meta

    @classmethod
    def load(cls, path: Path | str | None = None) -> Router:
        return cls(load(path))

    def predict(self, body: Mapping[str, Any]) -> tuple[Prediction, Features]:
        features = extract(body)
        return self.model.predict(features), features

    def decide(
        self,
        body: Mapping[str, Any],
        route: RouteSpec,
        candidates: Sequence[Candidate],
        ctx: RouteContext | None = None,
    ) -> Decision:
        """Raises `Unroutable` when no candidate has what the request needs or meets its tier pins."""
        if not candidates:
            raise ValueError(f"route {route.name!r} has no candidates")
        ctx = ctx or RouteContext()
        capable, skipped = _capable(route.name, candidates, ctx.needs)
        prediction, features = self.predict(body)
        return self._choose(
            prediction,
            features.prompt_tokens,
            features.max_tokens,
            features.has_tools,
            features.token_counts,
            route,
            capable,
            skipped,
            ctx,
        )

    def decide_at(
        self,
        difficulty: float,
        prompt_tokens: int,
        route: RouteSpec,
        candidates: Sequence[Candidate],
        ctx: RouteContext | None = None,
        *,
        max_tokens: int | None = None,
        has_tools: bool = False,
    ) -> Decision:
        """`decide` for a request known only by its recorded difficulty and prompt length (a logged
        one, replayed): the same choice `decide` made for a body of that difficulty and length, with
        the success probabilities taken at that difficulty (`DifficultyModel.at`)."""
        if not candidates:
            raise ValueError(f"route {route.name!r} has no candidates")
        ctx = ctx or RouteContext()
        capable, skipped = _capable(route.name, candidates, ctx.needs)
        prediction = self.model.at(difficulty)
        return self._choose(
            prediction, prompt_tokens, max_tokens, has_tools, {}, route, capable, skipped, ctx
        )

    def _choose(
        self,
        prediction: Prediction,
        prompt_tokens: int,
        max_tokens: int | None,
        has_tools: bool,
        token_counts: Mapping[str, int],
        route: RouteSpec,
        capable: list[Candidate],
        skipped: tuple[tuple[str, str], ...],
        ctx: RouteContext,
    ) -> Decision:
        costs: dict[str, float | None] = {
            c.name: None
            if c.input_per_mtok is None or c.output_per_mtok is None
            else self.cost.estimate(prompt_tokens, c.input_per_mtok, c.output_per_mtok, max_tokens)
            for c in capable
        }
        # The ladder is the tier order; cost only orders candidates within a tier (unknown last).
        ladder = sorted(capable, key=lambda c: (c.rank, _cost_key(costs[c.name])))
        eligible, pins = _apply_pins(ladder, route, ctx, has_tools, skipped)
        pressure = _clamp(ctx.budget_pressure)
        squeeze = _clamp((pressure - route.budget_soft_start) / max(1e-9, 1.0 - route.budget_soft_start))
        relief = 1.0 - route.budget_relief * squeeze
        # The team's override wins over the route, whichever knob either uses.
        quality, strong_fraction = (ctx.quality, ctx.strong_fraction)
        if quality is None and strong_fraction is None:
            quality, strong_fraction = route.quality, route.strong_fraction
        if strong_fraction is not None and quality is None:
            target = _clamp(strong_fraction) * relief
            chosen, reason = _by_strong_fraction(eligible, prediction, target)
            mode = "strong_fraction"
        else:
            target = _clamp(quality if quality is not None else DEFAULT_QUALITY) * relief
            chosen, reason = _by_quality(eligible, prediction, target)
            mode = "quality"
        if squeeze > 0:
            reason += "+budget"
        fallbacks = [c for c in ladder if c is not chosen and c.rank >= chosen.rank and c in eligible]
        return Decision(
            candidates=(chosen, *fallbacks),
            prediction=prediction,
            costs=costs,
            mode=mode,
            target=target,
            reason=reason,
            pins=pins,
            budget_pressure=pressure,
            tiers=tuple(dict.fromkeys(c.tier for c in ladder)),
            token_counts=token_counts,
            skipped=skipped,
        )


def _capable(
    route: str, candidates: Sequence[Candidate], needs: Sequence[Need]
) -> tuple[list[Candidate], tuple[tuple[str, str], ...]]:
    if not needs:
        return list(candidates), ()
    capable = [c for c in candidates if served_by(needs, c.capabilities)]
    if not capable:
        what, param = missing(needs, [c.capabilities for c in candidates]) or ("", None)
        raise Unroutable(f"no candidate of `{route}` supports {what}", param)
    skipped = tuple((c.name, lacks(needs, c.capabilities)) for c in candidates if c not in capable)
    return capable, skipped


def _apply_pins(
    ladder: list[Candidate],
    route: RouteSpec,
    ctx: RouteContext,
    has_tools: bool,
    skipped: tuple[tuple[str, str], ...],
) -> tuple[list[Candidate], tuple[str, ...]]:
    pins: list[str] = []
    asked: list[str] = []  # the pins as the refusal names them
    low, high = 0, max(TIER_RANK.values())
    if ctx.min_tier in TIER_RANK:
        low = TIER_RANK[ctx.min_tier]
        pins.append(f"header>={ctx.min_tier}")
        asked.append(f"x-switchyard-min-tier {ctx.min_tier}")
    if ctx.team_min_tier in TIER_RANK:
        low = max(low, TIER_RANK[ctx.team_min_tier])
        pins.append(f"team>={ctx.team_min_tier}")
        asked.append(f"the team's min_tier {ctx.team_min_tier}")
    if ctx.max_tier in TIER_RANK:
        high = TIER_RANK[ctx.max_tier]
        pins.append(f"team<={ctx.max_tier}")
        asked.append(f"the team's max_tier {ctx.max_tier}")
    eligible = [c for c in ladder if low <= c.rank <= high]
    if not eligible:
        offered = ", ".join(f"{c.name} ({c.tier})" for c in ladder)
        message = f"no candidate of `{route.name}` meets {' and '.join(asked)}: it offers {offered}"
        if skipped:
            message += f" (skipped for a missing capability: {', '.join(n for n, _ in skipped)})"
        header = ctx.min_tier in TIER_RANK
        raise Unroutable(message, "x-switchyard-min-tier" if header else None)
    if has_tools and route.tools_min_tier in TIER_RANK:
        floor = TIER_RANK[route.tools_min_tier]
        if floor > low:
            pins.append(f"tools>={route.tools_min_tier}")
            strong = [c for c in eligible if c.rank >= floor]
            if not strong:
                # The admin's preference, not the client's demand: the strongest in range instead.
                top = eligible[-1].rank
                return [c for c in eligible if c.rank == top], (*pins, "tools_unmet")
            eligible = strong
    return eligible, tuple(pins)


def _cost_key(cost: float | None) -> float:
    return float("inf") if cost is None else cost


def _by_quality(eligible: list[Candidate], prediction: Prediction, quality: float) -> tuple[Candidate, str]:
    """`eligible` is in ladder order, so the first qualifying candidate is the cheapest."""
    best = max(prediction.success[c.tier] for c in eligible)
    chosen = next(c for c in eligible if prediction.success[c.tier] >= quality * best)
    return chosen, "quality" if len(eligible) > 1 else "only_tier"


def _by_strong_fraction(
    eligible: list[Candidate], prediction: Prediction, fraction: float
) -> tuple[Candidate, str]:
    top_rank = eligible[-1].rank
    if fraction > 0 and prediction.difficulty >= 1.0 - fraction:
        return next(c for c in eligible if c.rank == top_rank), "strong_fraction"
    cheaper = [c for c in eligible if c.rank < top_rank]
    if not cheaper:
        return eligible[0], "only_tier"
    return _by_quality(cheaper, prediction, DEFAULT_QUALITY)[0], "below_threshold"
