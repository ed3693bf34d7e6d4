"""The config preview: logged requests (seeded on PostgreSQL and SQLite) and sample prompts replayed
through the running and the proposed config's planners, priced by hand here.

Prices are per million tokens: mini (small) $1 in / $2 out, big (large) $10 / $30. With two tiers
and a strong_fraction, a request goes to big exactly when its difficulty >= 1 - strong_fraction.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth_store import Principal
from gateway.config import GatewayConfig, parse_config
from gateway.db.engine import session_factory
from gateway.db.models import RequestLog
from gateway.live.preview import (
    DEFAULT_COMPLETION_TOKENS,
    PreviewError,
    PreviewRequest,
    Side,
    affected_routes,
    build_preview,
    logged_requests,
    median_completion,
    preview,
    sample_requests,
)
from gateway.live.preview_api import PreviewOut
from gateway.planner import InOrderPlanner
from routing.capabilities import needs_of
from routing.features import extract

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MINI = {"name": "mini", "model": "mini", "provider": "openai", "tier": "small"}
BIG = {"name": "big", "model": "big", "provider": "openai", "tier": "large"}


def price(inp: float, out: float) -> dict[str, float]:
    return {"input_per_mtok": inp, "output_per_mtok": out}


def config(routes: dict[str, Any], big: dict[str, float] | None = None, extra: Any = ()) -> GatewayConfig:
    models = [
        {**MINI, "price": price(1, 2)},
        {**BIG, "price": big or price(10, 30)},
        {"name": "loc", "model": "loc", "provider": "local", "tier": "local"},
        # No price in the config and none in the (empty) price map: unpriced.
        {"name": "mystery", "model": "no-such-model", "provider": "openai", "tier": "large"},
        *extra,
    ]
    return parse_config({"models": models, "routes": routes}, env={})


def side(routes: dict[str, Any], **kw: Any) -> Side:
    return Side.priced(config(routes, **kw), {})


def auto(strong_fraction: float, candidates: tuple[str, ...] = ("mini", "big")) -> dict[str, Any]:
    return {"auto": {"candidates": list(candidates), "strong_fraction": strong_fraction}}


# (difficulty, prompt tokens, completion tokens), newest first. Priced at mini / big:
# r1 0.002 / 0.025, r2 0.0022 / 0.023, r3 0.0008 / 0.010, r4 0.0002 / 0.0025, r5 0.005 / 0.06
ROWS = [(0.95, 1000, 500), (0.75, 2000, 100), (0.5, 400, 200), (0.2, 100, 50), (0.45, 3000, 1000)]


def requests(rows: list[tuple[float | None, int, int]] = ROWS) -> list[PreviewRequest]:
    return [PreviewRequest(d, p, c) for d, p, c in rows]


async def seed(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    """Rows in order, newest first: each a second older than the one before."""
    async with session_factory(engine)() as session:
        for i, row in enumerate(rows):
            session.add(
                RequestLog(
                    request_id=f"r{i}",
                    ts=T0 - timedelta(seconds=i),
                    requested_model=row.get("route") or "mini",
                    route=row.get("route", "auto"),
                    difficulty=row.get("difficulty"),
                    status=row.get("status", 200),
                    prompt_tokens=row.get("prompt_tokens", 10),
                    completion_tokens=row.get("completion_tokens", 10),
                    cached_tokens=0,
                    latency_ms=5.0,
                    streamed=False,
                    fallbacks=0,
                )
            )
        await session.commit()


def logged(difficulty: float | None, prompt: int, completion: int, **kw: Any) -> dict[str, Any]:
    return {"difficulty": difficulty, "prompt_tokens": prompt, "completion_tokens": completion, **kw}


# -- logged requests, on both databases ---------------------------------------------------------


async def test_a_strong_fraction_change_on_the_logged_requests(engine: AsyncEngine) -> None:
    other = {"other": {"candidates": ["mini"]}}
    before = side({**auto(0.3), **other})  # big from difficulty 0.7
    after = side({**auto(0.6), **other})  # big from difficulty 0.4: r3 and r5 move up
    noise = [
        logged(0.99, 5000, 5000, status=502),  # not answered: left out
        logged(0.99, 5000, 5000, route="other"),
        logged(None, 5000, 5000, route=None),  # a model asked for by name
    ]
    await seed(
        engine, [noise[0], *(logged(*r) for r in ROWS[:3]), *noise[1:], *(logged(*r) for r in ROWS[3:])]
    )
    out = await build_preview(session_factory(engine), before, after)
    assert PreviewOut.model_validate(out).model_dump(mode="json") == out
    assert out == {
        "source": "logged",
        "routes": [
            {
                "route": "auto",
                "requests": 5,
                "skipped_without_difficulty": 0,
                "changed_requests": 2,
                "completion_tokens_assumed": None,
                "before": {
                    "tiers": {"small": {"requests": 3, "share": 0.6}, "large": {"requests": 2, "share": 0.4}},
                    "candidates": {
                        "mini": {"tier": "small", "requests": 3, "share": 0.6, "cost_usd": "0.006"},
                        "big": {"tier": "large", "requests": 2, "share": 0.4, "cost_usd": "0.048"},
                    },
                    "priced_requests": 5,
                    "unpriced_requests": 0,
                    "unroutable_requests": 0,
                    "cost_usd": "0.054",
                    "cost_per_request_usd": "0.0108",
                },
                "after": {
                    "tiers": {"small": {"requests": 1, "share": 0.2}, "large": {"requests": 4, "share": 0.8}},
                    "candidates": {
                        "mini": {"tier": "small", "requests": 1, "share": 0.2, "cost_usd": "0.0002"},
                        "big": {"tier": "large", "requests": 4, "share": 0.8, "cost_usd": "0.118"},
                    },
                    "priced_requests": 5,
                    "unpriced_requests": 0,
                    "unroutable_requests": 0,
                    "cost_usd": "0.1182",
                    "cost_per_request_usd": "0.02364",
                },
                "delta": {
                    "tiers": {"small": -0.4, "large": 0.4},
                    "cost_usd": "0.0642",
                    "cost_per_request_usd": "0.01284",
                    "cost_change_pct": 118.89,
                    "partial": False,
                },
                "samples": None,
            }
        ],
    }
    # One route asked for: previewed even though the change leaves it as it is.
    same = await build_preview(session_factory(engine), before, after, route="other")
    assert [(r["route"], r["requests"], r["changed_requests"]) for r in same["routes"]] == [("other", 1, 0)]
    assert same["routes"][0]["delta"]["cost_usd"] == "0"


async def test_logged_requests_newest_first_answered_only_up_to_the_limit(engine: AsyncEngine) -> None:
    await seed(
        engine,
        [
            logged(0.1, 1, 10),
            logged(0.9, 9, 90, status=429),
            logged(None, 2, 20),
            logged(0.3, 3, 30, route="other"),
            logged(0.4, 4, 40),
            logged(0.5, 5, 50),
        ],
    )
    sessions = session_factory(engine)
    assert await logged_requests(sessions, "auto", 3) == requests([(0.1, 1, 10), (None, 2, 20), (0.4, 4, 40)])
    assert len(await logged_requests(sessions, "auto")) == 4
    assert await logged_requests(sessions, "nowhere") == []
    with pytest.raises(PreviewError):
        await logged_requests(sessions, "auto", 0)


async def test_an_empty_log(engine: AsyncEngine) -> None:
    out = await build_preview(session_factory(engine), side(auto(0.3)), side(auto(0.6)))
    (route,) = out["routes"]
    assert (route["route"], route["requests"], route["changed_requests"]) == ("auto", 0, 0)
    for key in ("before", "after"):
        assert route[key]["tiers"] == {
            "small": {"requests": 0, "share": 0.0},
            "large": {"requests": 0, "share": 0.0},
        }
        assert (route[key]["cost_usd"], route[key]["cost_per_request_usd"]) == ("0", None)
    assert route["delta"] == {
        "tiers": {"small": 0.0, "large": 0.0},
        "cost_usd": "0",
        "cost_per_request_usd": None,
        "cost_change_pct": None,
        "partial": False,
    }
    assert PreviewOut.model_validate(out)


async def test_sample_prompts_assume_the_routes_median_completion(engine: AsyncEngine) -> None:
    # Answered completions of auto: 100, 300, 500 (the errored 5000 is not one): median 300.
    await seed(
        engine,
        [logged(0.1, 1, 100), logged(0.1, 1, 5000, status=500), logged(0.1, 1, 500), logged(0.1, 1, 300)],
    )
    prompts: list[Any] = [
        "hi",  # 1 token + 4 for the message
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 2+2?"},
        ],  # 3 + 7 + 4
    ]
    # strong_fraction 0: nothing to big; 1: everything to big.
    out = await build_preview(session_factory(engine), side(auto(0.0)), side(auto(1.0)), prompts=prompts)
    assert PreviewOut.model_validate(out).model_dump(mode="json") == out
    (route,) = out["routes"]
    assert out["source"] == "samples" and route["completion_tokens_assumed"] == 300
    assert [(s["prompt_tokens"], s["before"], s["after"]) for s in route["samples"]] == [
        (5, "mini", "big"),
        (14, "mini", "big"),
    ]
    assert all(0.0 <= s["difficulty"] <= 1.0 for s in route["samples"])
    # mini: (5 + 14) x $1 + 600 x $2 per Mtok; big: 19 x $10 + 600 x $30.
    assert route["before"]["cost_usd"] == "0.001219" and route["after"]["cost_usd"] == "0.01819"
    assert route["before"]["cost_per_request_usd"] == "0.0006095"
    assert route["delta"]["tiers"] == {"small": -1.0, "large": 1.0} and route["changed_requests"] == 2
    given = await build_preview(
        session_factory(engine), side(auto(0.0)), side(auto(1.0)), prompts=["hi"], completion_tokens=7
    )
    assert given["routes"][0]["completion_tokens_assumed"] == 7
    # Without a database: the documented constant.
    bare = await build_preview(None, side(auto(0.0)), side(auto(1.0)), prompts=["hi"])
    assert bare["routes"][0]["completion_tokens_assumed"] == DEFAULT_COMPLETION_TOKENS
    with pytest.raises(PreviewError, match="no database"):
        await build_preview(None, side(auto(0.0)), side(auto(1.0)))
    with pytest.raises(PreviewError, match="no route `nope`"):
        await build_preview(None, side(auto(0.0)), side(auto(1.0)), route="nope", prompts=["hi"])


# -- the computation alone ----------------------------------------------------------------------


def test_a_price_change_keeps_the_shares_and_moves_the_cost() -> None:
    before, after = side(auto(0.3)), side(auto(0.3), big=price(5, 15))
    assert affected_routes(before, after) == ["auto"]
    (route,) = preview(before, after, {"auto": requests()}, "logged")["routes"]
    assert route["changed_requests"] == 0
    assert route["before"]["tiers"] == route["after"]["tiers"]
    assert route["before"]["candidates"]["big"]["cost_usd"] == "0.048"
    assert route["after"]["candidates"]["big"]["cost_usd"] == "0.024"
    assert route["delta"]["cost_usd"] == "-0.024" and route["delta"]["cost_change_pct"] == -44.44


def test_a_candidate_list_change_and_a_route_added_or_removed() -> None:
    before = side({**auto(0.3), "gone": {"candidates": ["big"]}})
    after = side({**auto(0.3, ("mini",)), "fresh": {"candidates": ["mini"]}})
    assert affected_routes(before, after) == ["auto", "gone", "fresh"]
    rows = requests()
    out = preview(before, after, {"auto": rows, "gone": rows, "fresh": rows}, "logged")
    PreviewOut.model_validate(out)
    auto_, gone, fresh = out["routes"]
    assert auto_["after"]["tiers"] == {"small": {"requests": 5, "share": 1.0}}
    assert auto_["after"]["cost_usd"] == "0.0102"  # every row at mini's price
    assert auto_["delta"]["tiers"] == {"small": 0.4, "large": -0.4} and auto_["changed_requests"] == 2
    # `gone` served everything at big (one candidate: in order, whatever the difficulty).
    assert gone["before"]["cost_usd"] == "0.1205" and gone["after"] is None and gone["delta"] is None
    assert fresh["before"] is None and fresh["after"]["candidates"]["mini"]["requests"] == 5


def test_a_candidate_without_a_price_is_counted_unpriced_not_guessed() -> None:
    before, after = side(auto(0.3)), side(auto(0.3, ("mini", "mystery")))
    (route,) = preview(before, after, {"auto": requests()}, "logged")["routes"]
    assert route["after"]["candidates"]["mystery"] == {
        "tier": "large",
        "requests": 2,
        "share": 0.4,
        "cost_usd": None,
    }
    assert (route["after"]["priced_requests"], route["after"]["unpriced_requests"]) == (3, 2)
    assert route["after"]["cost_usd"] == "0.006" and route["after"]["cost_per_request_usd"] == "0.002"
    assert route["delta"]["partial"] is True and route["delta"]["cost_change_pct"] is None
    assert route["delta"]["cost_usd"] == "-0.048"  # over the priced requests only, as flagged


def test_requests_logged_without_a_difficulty() -> None:
    rows = requests([(None, 100, 100), *ROWS])
    # A learned planner cannot place it: left out of both sides.
    (route,) = preview(side(auto(0.3)), side(auto(0.6)), {"auto": rows}, "logged")["routes"]
    assert (route["requests"], route["skipped_without_difficulty"]) == (5, 1)
    # In-order planners (no router artifact) need none: the first candidate takes everything.
    cfg_b, cfg_a = config(auto(0.3)), config(auto(0.3, ("big", "mini")))
    before = Side.of(cfg_b, Side.priced(cfg_b, {}).prices, InOrderPlanner(cfg_b))
    after = Side.of(cfg_a, Side.priced(cfg_a, {}).prices, InOrderPlanner(cfg_a))
    (route,) = preview(before, after, {"auto": rows}, "logged")["routes"]
    assert (route["requests"], route["skipped_without_difficulty"], route["changed_requests"]) == (6, 0, 6)
    assert (
        route["before"]["candidates"]["mini"]["requests"]
        == route["after"]["candidates"]["big"]["requests"]
        == 6
    )


def test_a_sample_the_proposed_config_cannot_serve_is_unroutable() -> None:
    seeing = {"name": "eye", "model": "eye", "provider": "openai", "tier": "large", "price": price(10, 30)}
    blind = {**MINI, "name": "blind", "capabilities": ["tools"], "price": price(1, 2)}
    before = Side.priced(config(auto(0.3, ("blind", "eye")), extra=[seeing, blind]), {})
    after = Side.priced(config(auto(0.3, ("blind",)), extra=[seeing, blind]), {})
    picture = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "what"}],
        }
    ]
    (route,) = preview(before, after, {"auto": sample_requests(["hi", picture], 100)}, "samples")["routes"]
    assert [(s["before"], s["after"]) for s in route["samples"]] == [("blind", "blind"), ("eye", None)]
    assert route["after"]["unroutable_requests"] == 1 and route["after"]["unpriced_requests"] == 0
    assert route["delta"]["partial"] is False


def test_sample_prompts_are_checked() -> None:
    with pytest.raises(PreviewError, match=r"prompts\[1\]"):
        sample_requests(["ok", []], 10)
    with pytest.raises(PreviewError, match=r"prompts\[0\]"):
        sample_requests([42], 10)  # type: ignore[list-item]
    assert median_completion([]) == DEFAULT_COMPLETION_TOKENS
    assert median_completion(requests([(0.1, 1, 10), (0.1, 1, 21)])) == 16  # 15.5, rounded to even


def test_unrelated_changes_affect_no_route() -> None:
    before = side(auto(0.3))
    assert affected_routes(before, side(auto(0.3))) == []
    # A model no route uses, and the price of a model the route does not name.
    extra = [{"name": "spare", "model": "spare", "provider": "openai", "tier": "small", "price": price(1, 1)}]
    assert affected_routes(before, side(auto(0.3), extra=extra)) == []
    assert affected_routes(before, side(auto(0.3, ("mini", "big")))) == []
    assert affected_routes(before, side({"auto": {"candidates": ["mini", "big"], "quality": 0.8}})) == [
        "auto"
    ]
    retiered = [{**MINI, "tier": "medium", "price": price(1, 2)}, {**BIG, "price": price(10, 30)}]
    moved = Side.priced(parse_config({"models": retiered, "routes": auto(0.3)}, env={}), {})
    assert affected_routes(before, moved) == ["auto"]


def test_the_replay_is_the_planners_own_choice() -> None:
    """For bodies planned in full, `first_at` at the difficulty the plan reports and the prompt's
    token count gives the candidate the plan put first: both knobs, two small candidates priced
    apart (cost orders them), a local one."""
    cheap = {"name": "cheap", "model": "cheap", "provider": "openai", "tier": "small", "price": price(0.5, 4)}
    mid = {"name": "mid", "model": "mid", "provider": "openai", "tier": "medium", "price": price(3, 9)}
    candidates = ["loc", "mini", "cheap", "mid", "big"]
    knobs: list[dict[str, float]] = [{"quality": q} for q in (0.0, 0.6, 0.85, 0.9, 0.95, 1.0)]
    knobs += [{"strong_fraction": f} for f in (0.1, 0.3, 0.7)]
    texts = [
        "hi",
        "What is 2+2?",
        "Prove that there are infinitely many primes. Explain step by step.",
        "def f(x):\n    return x * 2\n\nWhy does this function fail for strings? " * 3,
        "Summarise the following text in exactly three bullet points. " + "The quick brown fox. " * 80,
        "Translate to French: good morning, how are you today?",
        "Compare the trade-offs of B-trees and LSM-trees for a write-heavy workload.",
    ]
    checked = 0
    for knob in knobs:
        side_ = side({"auto": {"candidates": candidates, **knob}}, extra=[cheap, mid])
        planner, route = side_.planner, side_.config.routes["auto"]
        for text in texts:
            body = {"messages": [{"role": "user", "content": text}]}
            plan = planner.plan("auto", route, body, {}, Principal("master"), needs_of(body))
            assert plan.difficulty is not None and 0.0 < plan.difficulty < 1.0
            assert planner.first_at("auto", plan.difficulty, extract(body).prompt_tokens) == plan.names[0]
            checked += 1
    assert checked == 63
