"""record_of: a routed request's baseline is its usage priced at the route's strongest candidate, from
the snapshot it ran on; a direct one's is its own cost."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gateway.auth import ANONYMOUS
from gateway.config import parse_config
from gateway.control import record_of
from gateway.live.snapshot import Snapshot, build_snapshot, strongest_prices
from gateway.pipeline.outcome import Outcome
from gateway.pricing import TokenPrice
from gateway.settings import Settings
from providers.base import Usage

MTOK = Decimal(1_000_000)


def dep(name: str, tier: str, price: tuple[str, str, str] | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": name,
        "provider": "openai_compatible",
        "model": name,
        "api_base": "http://127.0.0.1:9/v1",
        "api_key": "unused",
        "tier": tier,
    }
    if price is not None:
        d["price"] = {
            "input_per_mtok": price[0],
            "output_per_mtok": price[1],
            "cached_input_per_mtok": price[2],
        }
    return d


def snapshot(models: list[dict[str, Any]], routes: dict[str, list[str]], version: int = 1) -> Snapshot:
    config = parse_config(
        {"models": models, "routes": {n: {"candidates": c} for n, c in routes.items()}}, env={}
    )
    return build_snapshot(config, version, Settings(_env_file=None), {})  # type: ignore[call-arg]


MODELS = [
    dep("cheap", "small", ("0.15", "0.6", "0.075")),
    dep("strong", "large", ("2.5", "10", "1.25")),
    dep("strong-twin", "large", ("30", "60", "30")),  # same tier, listed later: never the baseline
    dep("mid", "medium", ("1", "2", "1")),
    dep("unpriced", "large"),
]


def test_the_strongest_candidate_is_the_highest_tier_first_listed() -> None:
    snap = snapshot(
        MODELS,
        {
            "auto": ["cheap", "mid", "strong", "strong-twin"],
            "twin-first": ["strong-twin", "strong", "cheap"],
            "small-only": ["cheap"],
            "dark": ["cheap", "unpriced"],
        },
    )
    prices = snap.prices
    assert snap.baselines == {
        "auto": prices["strong"],
        "twin-first": prices["strong-twin"],
        "small-only": prices["cheap"],
        "dark": None,
    }
    assert strongest_prices(snap.config, prices) == snap.baselines


def outcome(snap: Snapshot, *, route: str | None, served: str, usage: Usage | None) -> Outcome:
    o = Outcome(request_id="r1", requested_model=route or served, endpoint="chat", snapshot=snap)
    o.route = route
    o.deployment = next(d for d in snap.config.models if d.id == served)
    o.usage = usage
    price = snap.prices[served]
    o.cost = price.cost(usage) if price is not None and usage is not None else None
    return o


def test_a_routed_request_records_what_the_strongest_candidate_would_have_cost() -> None:
    snap = snapshot(
        MODELS, {"auto": ["cheap", "mid", "strong", "strong-twin"], "dark": ["cheap", "unpriced"]}
    )
    usage = Usage(prompt_tokens=1234, completion_tokens=567, cached_tokens=200)
    rec = record_of(outcome(snap, route="auto", served="cheap", usage=usage), ANONYMOUS)
    # Exact: 1034 fresh + 200 cached prompt tokens and 567 completion tokens at the strong prices.
    want = (1034 * Decimal("2.5") + 200 * Decimal("1.25") + 567 * Decimal("10")) / MTOK
    assert rec.baseline_cost_usd == want == Decimal("0.008505")
    assert rec.cost_usd == (1034 * Decimal("0.15") + 200 * Decimal("0.075") + 567 * Decimal("0.6")) / MTOK
    assert rec.baseline_cost_usd - rec.cost_usd == Decimal("0.0079947")

    # The strongest served it: no saving.
    rec = record_of(outcome(snap, route="auto", served="strong", usage=usage), ANONYMOUS)
    assert rec.baseline_cost_usd == rec.cost_usd == want
    # Its strongest candidate has no price: unknown, never $0.
    assert (
        record_of(outcome(snap, route="dark", served="cheap", usage=usage), ANONYMOUS).baseline_cost_usd
        is None
    )
    # Nothing used (failed before an answer): nothing it would have cost either.
    failed = outcome(snap, route="auto", served="cheap", usage=None)
    failed.cost = Decimal(0)
    assert record_of(failed, ANONYMOUS).baseline_cost_usd == Decimal(0)


def test_a_direct_request_is_its_own_baseline() -> None:
    snap = snapshot(MODELS, {"auto": ["cheap", "strong"]})
    usage = Usage(prompt_tokens=10, completion_tokens=20)
    rec = record_of(outcome(snap, route=None, served="mid", usage=usage), ANONYMOUS)
    assert rec.baseline_cost_usd == rec.cost_usd == Decimal("0.00005")
    rec = record_of(outcome(snap, route=None, served="unpriced", usage=usage), ANONYMOUS)
    assert rec.baseline_cost_usd is None and rec.cost_usd is None


def test_the_baseline_is_priced_from_the_snapshot_the_request_ran_on() -> None:
    old = snapshot(MODELS, {"auto": ["cheap", "strong"]}, version=1)
    repriced = [dep("cheap", "small", ("0.15", "0.6", "0.075")), dep("strong", "large", ("5", "20", "5"))]
    new = snapshot(repriced, {"auto": ["cheap", "strong"]}, version=2)
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=0)
    assert (
        record_of(outcome(old, route="auto", served="cheap", usage=usage), ANONYMOUS).baseline_cost_usd == 2.5
    )
    assert (
        record_of(outcome(new, route="auto", served="cheap", usage=usage), ANONYMOUS).baseline_cost_usd == 5
    )
    assert isinstance(new.baselines["auto"], TokenPrice)
