"""What a config change would do to routing and cost, before it is applied.

A preview replays requests through the running config's planner and the proposed one's, and prices
each request at the candidate the planner puts first: prompt tokens x input price + completion
tokens x output price (the route's candidate priced as the planner prices it: its first deployment).
The requests are either

- the last N logged requests of a route (`logged_requests`: answered ones, newest first), each known
  by its recorded difficulty and tokens and replayed with `RoutePlanner.first_at`, which is the
  planner's own choice (`routing.policy.Router.decide_at`) for that difficulty and prompt length; or
- sample prompts (`sample_requests`: strings or chat message lists), planned in full from their body
  by `RoutePlanner.plan`; their prompt tokens are counted (`routing.features.extract`) and their
  completion is an assumed figure: the median completion of the route's logged requests, else
  DEFAULT_COMPLETION_TOKENS.

Replayed as a key without team overrides sends them: a logged request's tools, min-tier header and
team overrides are not in the log, and a budgeted key's skipping of unpriced candidates is not
modelled. A request whose candidate has no price is counted as unpriced, never guessed; a logged
request without a recorded difficulty (served while no router was loaded) cannot be placed by a
learned planner and is skipped on both sides, so both sides always count the same requests.

`preview` is pure (rows in, a JSON-ready dict out: USD as exact decimal strings, like the other admin
responses, shares as floats); `logged_requests` is its one query; `build_preview` puts them together.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.accounting.queries import format_usd
from gateway.auth_store import Principal
from gateway.config import GatewayConfig, Route
from gateway.db.models import RequestLog
from gateway.errors import GatewayError
from gateway.live.snapshot import Snapshot
from gateway.planner import RoutePlanner, build_planner
from gateway.pricing import TokenPrice, price_for
from providers.deployment import TIER_RANK
from routing.capabilities import needs_of
from routing.features import extract

DEFAULT_LOGGED = 1_000
MAX_LOGGED = 10_000
MAX_SAMPLES = 1_000
# The completion assumed for a sample prompt when the route has no answered request in the log: a
# typical chat answer (a few paragraphs), not the router's own prior, which is fitted on benchmark
# answers of a few tokens.
DEFAULT_COMPLETION_TOKENS = 256
# Cost per request is a quotient: kept to the log's own precision (Money: 1e-10 USD).
_USD_PLACES = Decimal("1e-10")
_PREVIEWER = Principal("master")

Source = Literal["logged", "samples"]
Prompt = str | Sequence[Mapping[str, Any]]


class PreviewError(ValueError):
    """A preview that cannot be made as asked; the message says why (the API answers 400)."""


@dataclass(frozen=True, slots=True)
class Side:
    """One config as the preview sees it: its prices per deployment id (as `Snapshot.prices`) and
    its planner."""

    config: GatewayConfig
    prices: Mapping[str, TokenPrice | None]
    planner: RoutePlanner

    @classmethod
    def of(
        cls,
        config: GatewayConfig,
        prices: Mapping[str, TokenPrice | None],
        planner: RoutePlanner | None = None,
    ) -> Side:
        return cls(config, prices, planner or build_planner(config, dict(prices)))

    @classmethod
    def priced(cls, config: GatewayConfig, price_map: dict[str, Any]) -> Side:
        """`config` priced as `build_snapshot` prices it (the config's price, else the price map)."""
        return cls.of(config, {d.id: price_for(d, price_map) for d in config.models})

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> Side:
        return cls(snapshot.config, snapshot.prices, snapshot.planner)

    def candidate(self, name: str) -> tuple[str, TokenPrice | None]:
        """A candidate's tier and price: its first deployment's, as the planner takes them."""
        dep = next(d for d in self.config.models if d.name == name)
        return dep.tier, self.prices.get(dep.id)


@dataclass(frozen=True, slots=True)
class PreviewRequest:
    difficulty: float | None
    prompt_tokens: int
    completion_tokens: int
    # A sample prompt's chat body: planned in full (capabilities included) rather than by difficulty.
    body: Mapping[str, Any] | None = None


# -- the inputs ---------------------------------------------------------------------------------


async def logged_requests(
    sessions: async_sessionmaker[AsyncSession], route: str, limit: int = DEFAULT_LOGGED
) -> list[PreviewRequest]:
    """The last `limit` (at most MAX_LOGGED) answered requests of `route`, newest first."""
    if limit < 1:
        raise PreviewError("limit must be at least 1")
    query = (
        select(RequestLog.difficulty, RequestLog.prompt_tokens, RequestLog.completion_tokens)
        .where(RequestLog.route == route, RequestLog.status >= 200, RequestLog.status < 300)
        .order_by(RequestLog.ts.desc())
        .limit(min(limit, MAX_LOGGED))
    )
    async with sessions() as session:
        rows = (await session.execute(query)).all()
    return [PreviewRequest(d, p, c) for d, p, c in rows]


def median_completion(logged: Sequence[PreviewRequest]) -> int:
    """The completion a sample prompt is assumed to get on a route: the median of its logged ones."""
    if not logged:
        return DEFAULT_COMPLETION_TOKENS
    return round(statistics.median(r.completion_tokens for r in logged))


def sample_requests(prompts: Sequence[Prompt], completion_tokens: int) -> list[PreviewRequest]:
    """Sample prompts (a string: one user message; or a chat message list) as requests; the prompt
    tokens are the router's count (`routing.features`), the difficulty comes when they are planned."""
    if len(prompts) > MAX_SAMPLES:
        raise PreviewError(f"at most {MAX_SAMPLES} sample prompts")
    if completion_tokens < 0:
        raise PreviewError("completion_tokens must not be negative")
    out = []
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str):
            messages: list[Any] = [{"role": "user", "content": prompt}]
        elif isinstance(prompt, Sequence) and prompt and all(isinstance(m, Mapping) for m in prompt):
            messages = [dict(m) for m in prompt]
        else:
            raise PreviewError(f"prompts[{i}]: a string or a non-empty list of chat messages")
        body = {"messages": messages}
        out.append(PreviewRequest(None, extract(body).prompt_tokens, completion_tokens, body))
    return out


def affected_routes(before: Side, after: Side) -> list[str]:
    """Routes whose planning or pricing the change touches: added, removed, or with another
    definition, or a candidate with another tier, price or capabilities."""

    def inputs(side: Side, name: str) -> Any:
        route = side.config.routes.get(name)
        if route is None:
            return None
        caps: dict[str, frozenset[str]] = {}
        for dep in side.config.models:
            caps[dep.name] = caps.get(dep.name, frozenset()) | dep.capabilities
        return route, [(c, *side.candidate(c), caps[c]) for c in route.candidates]

    names = dict.fromkeys([*before.config.routes, *after.config.routes])
    return [n for n in names if inputs(before, n) != inputs(after, n)]


# -- the computation ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    route: Route
    # Candidate -> (tier, price); in the route's order.
    ladder: dict[str, tuple[str, TokenPrice | None]]
    requests: dict[str, int]
    cost: dict[str, Decimal]
    unroutable: int = 0

    @classmethod
    def of(cls, side: Side, name: str) -> _Tally | None:
        route = side.config.routes.get(name)
        if route is None:
            return None
        ladder = {c: side.candidate(c) for c in route.candidates}
        return cls(route, ladder, dict.fromkeys(ladder, 0), dict.fromkeys(ladder, Decimal(0)))

    def add(self, candidate: str | None, request: PreviewRequest) -> None:
        if candidate is None:
            self.unroutable += 1
            return
        self.requests[candidate] += 1
        price = self.ladder[candidate][1]
        if price is not None:
            self.cost[candidate] += (
                request.prompt_tokens * price.input + request.completion_tokens * price.output
            )

    def priced(self) -> int:
        return sum(n for c, n in self.requests.items() if self.ladder[c][1] is not None)

    def total(self) -> Decimal:
        return sum(self.cost.values(), Decimal(0))

    def tiers(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for tier in sorted({t for t, _ in self.ladder.values()}, key=TIER_RANK.__getitem__):
            counts[tier] = sum(n for c, n in self.requests.items() if self.ladder[c][0] == tier)
        return counts


def _share(count: int, total: int) -> float:
    return round(count / total, 4) if total else 0.0


def _per_request(cost: Decimal, priced: int) -> Decimal | None:
    return (cost / priced).quantize(_USD_PLACES, ROUND_HALF_EVEN) if priced else None


def _usd(value: Decimal | None) -> str | None:
    return None if value is None else format_usd(value)


def _side_out(tally: _Tally, n: int) -> dict[str, Any]:
    priced = tally.priced()
    total = tally.total()
    return {
        "tiers": {t: {"requests": k, "share": _share(k, n)} for t, k in tally.tiers().items()},
        "candidates": {
            c: {
                "tier": tier,
                "requests": tally.requests[c],
                "share": _share(tally.requests[c], n),
                "cost_usd": None if price is None else format_usd(tally.cost[c]),
            }
            for c, (tier, price) in tally.ladder.items()
        },
        "priced_requests": priced,
        "unpriced_requests": n - priced - tally.unroutable,
        "unroutable_requests": tally.unroutable,
        "cost_usd": format_usd(total),
        "cost_per_request_usd": _usd(_per_request(total, priced)),
    }


def _delta(before: _Tally, after: _Tally, n: int) -> dict[str, Any]:
    b_tiers, a_tiers = before.tiers(), after.tiers()
    tiers = sorted({*b_tiers, *a_tiers}, key=TIER_RANK.__getitem__)
    b_total, a_total = before.total(), after.total()
    b_priced, a_priced = before.priced(), after.priced()
    partial = b_priced + before.unroutable < n or a_priced + after.unroutable < n
    b_per, a_per = _per_request(b_total, b_priced), _per_request(a_total, a_priced)
    pct = None
    if not partial and b_total:
        pct = round(float((a_total - b_total) / b_total * 100), 2)
    return {
        "tiers": {t: round((a_tiers.get(t, 0) - b_tiers.get(t, 0)) / n, 4) if n else 0.0 for t in tiers},
        "cost_usd": format_usd(a_total - b_total),
        "cost_per_request_usd": None if b_per is None or a_per is None else format_usd(a_per - b_per),
        "cost_change_pct": pct,
        "partial": partial,
    }


def _place(
    side: Side, tally: _Tally | None, name: str, request: PreviewRequest
) -> tuple[str | None, float | None]:
    """The candidate the side's planner puts first (None: it refuses the request) and the
    difficulty it saw."""
    if tally is None:
        return None, None
    if request.body is None:
        return side.planner.first_at(name, request.difficulty, request.prompt_tokens), request.difficulty
    body = dict(request.body)
    try:
        plan = side.planner.plan(name, tally.route, body, {}, _PREVIEWER, needs_of(body))
    except GatewayError:
        return None, None
    return plan.names[0], plan.difficulty


def preview_route(
    before: Side, after: Side, name: str, requests: Sequence[PreviewRequest], source: Source
) -> dict[str, Any]:
    """One route's preview: see `preview`."""
    tallies = (_Tally.of(before, name), _Tally.of(after, name))
    if tallies == (None, None):
        raise PreviewError(f"no route `{name}` in either config")
    used = skipped = changed = 0
    samples = []
    for request in requests:
        (b, b_diff), (a, a_diff) = (
            _place(before, tallies[0], name, request),
            _place(after, tallies[1], name, request),
        )
        if (
            request.body is None
            and request.difficulty is None
            and any(t is not None and c is None for t, c in zip(tallies, (b, a), strict=True))
        ):
            skipped += 1  # a learned planner cannot place a request logged without a difficulty
            continue
        used += 1
        changed += b != a
        for tally, candidate in zip(tallies, (b, a), strict=True):
            if tally is not None:
                tally.add(candidate, request)
        if source == "samples":
            difficulty = a_diff if a_diff is not None else b_diff
            samples.append(
                {
                    "difficulty": None if difficulty is None else round(difficulty, 4),
                    "prompt_tokens": request.prompt_tokens,
                    "before": b,
                    "after": a,
                }
            )
    before_t, after_t = tallies
    assumed = requests[0].completion_tokens if source == "samples" and requests else None
    return {
        "route": name,
        "requests": used,
        "skipped_without_difficulty": skipped,
        "changed_requests": changed,
        "completion_tokens_assumed": assumed,
        "before": None if before_t is None else _side_out(before_t, used),
        "after": None if after_t is None else _side_out(after_t, used),
        "delta": None if before_t is None or after_t is None else _delta(before_t, after_t, used),
        "samples": samples if source == "samples" else None,
    }


def preview(
    before: Side, after: Side, requests: Mapping[str, Sequence[PreviewRequest]], source: Source
) -> dict[str, Any]:
    """For each route in `requests` (route -> its requests), each side's share of requests per tier
    and per candidate, its cost (total and per priced request) and the change; see the module's
    docstring. A side without the route is null (the route is added or removed). Pure and
    deterministic: the same configs and requests give the same numbers."""
    return {
        "source": source,
        "routes": [preview_route(before, after, name, rows, source) for name, rows in requests.items()],
    }


async def build_preview(
    sessions: async_sessionmaker[AsyncSession] | None,
    before: Side,
    after: Side,
    *,
    route: str | None = None,
    limit: int = DEFAULT_LOGGED,
    prompts: Sequence[Prompt] | None = None,
    completion_tokens: int | None = None,
) -> dict[str, Any]:
    """The preview of `route`, or of every route the change affects, on its last `limit` logged
    requests, or on `prompts` when given (their completion: `completion_tokens`, else the median of
    the route's last `limit` logged requests, else DEFAULT_COMPLETION_TOKENS). Without a database
    (`sessions` None) only sample prompts can be previewed."""
    if route is not None and route not in before.config.routes and route not in after.config.routes:
        raise PreviewError(f"no route `{route}` in either config")
    routes = [route] if route is not None else affected_routes(before, after)
    if prompts is None and sessions is None:
        raise PreviewError("no database: logged requests cannot be previewed; give sample prompts")
    requests: dict[str, list[PreviewRequest]] = {}
    for name in routes:
        if prompts is None:
            assert sessions is not None
            requests[name] = await logged_requests(sessions, name, limit)
            continue
        assumed = completion_tokens
        if assumed is None:
            logged = await logged_requests(sessions, name, limit) if sessions is not None else []
            assumed = median_completion(logged)
        requests[name] = sample_requests(prompts, assumed)
    source: Source = "logged" if prompts is None else "samples"
    # Up to thousands of routing decisions per route: off the event loop, so the requests it serves
    # meanwhile wait on the GIL's switch interval at most, never on the whole preview.
    return await asyncio.to_thread(preview, before, after, requests, source)


__all__ = [
    "DEFAULT_COMPLETION_TOKENS",
    "DEFAULT_LOGGED",
    "MAX_LOGGED",
    "MAX_SAMPLES",
    "PreviewError",
    "PreviewRequest",
    "Side",
    "affected_routes",
    "build_preview",
    "logged_requests",
    "median_completion",
    "preview",
    "preview_route",
    "sample_requests",
]
