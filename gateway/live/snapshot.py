"""Everything derived from one config version, built once and never changed: a request keeps the
snapshot it started with, whatever is applied while it runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.config import GatewayConfig
from gateway.dispatch import Dispatcher
from gateway.pipeline.budget import chargeable
from gateway.planner import RoutePlanner, build_planner
from gateway.pricing import TokenPrice, max_output_tokens, price_for
from gateway.registry import build_providers
from gateway.settings import Settings
from providers.base import Provider
from providers.deployment import TIER_RANK, Deployment

# The output cap of a deployment whose maximum is not known: no model answers at greater length, and
# a count past it only overflows the limiter's arithmetic.
UNKNOWN_MAX_OUTPUT = 1_000_000


@dataclass(slots=True)
class Users:
    """Requests still running on a snapshot (the only mutable part: see LiveConfig)."""

    count: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    config: GatewayConfig
    providers: Mapping[str, Provider]
    dispatcher: Dispatcher
    planner: RoutePlanner
    prices: Mapping[str, TokenPrice | None]
    max_output: Mapping[str, int | None]
    # The longest output any deployment of a name can give.
    output_caps: Mapping[str, int]
    names: tuple[str, ...]
    chargeable: Callable[[Deployment], bool]
    # Route -> the price of its strongest candidate: what a routed request's usage is priced at for
    # its baseline cost (the saving routing made). None where that candidate has no known price.
    baselines: Mapping[str, TokenPrice | None] = field(default_factory=dict)
    # Route -> its strongest candidate (what shadow judging compares a cheaper answer against).
    strongest: Mapping[str, Deployment] = field(default_factory=dict)
    users: Users = field(default_factory=Users, compare=False)


def _same(a: Deployment, b: Deployment) -> bool:
    return a.model_dump(mode="json") == b.model_dump(mode="json")


def strongest_candidates(config: GatewayConfig) -> dict[str, Deployment]:
    """Each route's strongest candidate: the highest tier, the first listed among equals; a name's
    first deployment stands for it, as in the router (gateway.planner)."""
    first: dict[str, Deployment] = {}
    for dep in config.models:
        first.setdefault(dep.name, dep)
    return {
        name: first[max(route.candidates, key=lambda c: TIER_RANK[first[c].tier])]  # first of equals
        for name, route in config.routes.items()
    }


def strongest_prices(
    config: GatewayConfig, prices: Mapping[str, TokenPrice | None]
) -> dict[str, TokenPrice | None]:
    """Each route's strongest candidate's price (None where it has no known price)."""
    return {name: prices.get(dep.id) for name, dep in strongest_candidates(config).items()}


def build_snapshot(
    config: GatewayConfig,
    version: int,
    settings: Settings,
    price_map: dict[str, Any],
    previous: Snapshot | None = None,
    planner: RoutePlanner | None = None,
) -> Snapshot:
    """A snapshot of `config`; a deployment whose settings are those it had in `previous` keeps
    that snapshot's provider (and its connection pool)."""
    prices = {d.id: price_for(d, price_map) for d in config.models}
    max_output = {d.id: max_output_tokens(d, price_map) for d in config.models}
    if previous is None:
        providers = build_providers(config.models, settings.local_engines)
    else:
        before = {d.id: d for d in previous.config.models}
        providers = {}
        for dep in config.models:
            old = before.get(dep.id)
            if old is not None and _same(old, dep):
                providers[dep.id] = previous.providers[dep.id]
            else:
                providers.update(build_providers([dep], settings.local_engines))
    dispatcher = Dispatcher(providers, config.models, settings)
    if previous is not None:
        dispatcher.share_health(previous.dispatcher)
    output_caps = {
        name: max(max_output.get(dep.id) or UNKNOWN_MAX_OUTPUT for dep in dispatcher.deployments(name))
        for name in config.names()
        if dispatcher.deployments(name)
    }
    strongest = strongest_candidates(config)
    return Snapshot(
        version=version,
        config=config,
        providers=providers,
        dispatcher=dispatcher,
        planner=planner or build_planner(config, prices),
        prices=prices,
        max_output=max_output,
        output_caps=output_caps,
        names=tuple(config.names()),
        chargeable=chargeable(prices),
        baselines={name: prices.get(dep.id) for name, dep in strongest.items()},
        strongest=strongest,
    )


__all__ = ["Snapshot", "Users", "build_snapshot", "strongest_prices"]
