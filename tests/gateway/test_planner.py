"""The routing seam: capabilities for a name asked for directly, the in-order planner (no artifact),
and the learned planner reading a team's typed overrides and the min-tier header."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.auth import Principal
from gateway.config import GatewayConfig, parse_config
from gateway.errors import GatewayError
from gateway.planner import InOrderPlanner, build_planner, direct
from routing.capabilities import needs_of
from routing.overrides import TeamRouting

HI = [{"role": "user", "content": "hi"}]
TOOLS = {"messages": HI, "tools": [{"type": "function", "function": {"name": "f"}}]}
NO_TOOLS = {"messages": HI}


def config() -> GatewayConfig:
    def dep(name: str, tier: str, **extra: Any) -> dict[str, Any]:
        price = {"input_per_mtok": 1.0, "output_per_mtok": 1.0}
        return {
            "name": name,
            "model": name,
            "api_base": "http://127.0.0.1:9/v1",
            "tier": tier,
            "price": price,
            **extra,
        }

    models = [
        dep("plain", "local", capabilities=[]),
        dep("mixed", "small", capabilities=[]),
        dep("mixed", "small", capabilities=["tools"]),
        dep("full", "large"),
    ]
    routes = {"auto": {"candidates": ["plain", "full"], "quality": 0.0}, "bare": {"candidates": ["plain"]}}
    return parse_config({"models": models, "routes": routes}, env={})


def refusal(call: Any, *args: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        call(*args)
    assert caught.value.status == 400 and caught.value.type == "invalid_request_error"
    return caught.value


def test_direct_names_the_missing_capability_and_the_deployments_passed_over() -> None:
    cfg = config()
    plain, mixed = [d for d in cfg.models if d.name == "plain"], [d for d in cfg.models if d.name == "mixed"]
    assert direct("plain", plain, needs_of(NO_TOOLS)) == "direct"
    error = refusal(direct, "plain", plain, needs_of(TOOLS))
    assert (error.message, error.param) == ("plain does not support tools", "tools")
    assert direct("mixed", mixed, needs_of(TOOLS)) == "direct; skipped=mixed#1:tools"
    picture = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}
    error = refusal(direct, "mixed", mixed, needs_of({**picture, "tools": TOOLS["tools"]}))
    assert (error.message, error.param) == ("mixed does not support vision", "messages")


def test_in_order_planner_drops_candidates_without_the_capability() -> None:
    cfg = config()
    planner = InOrderPlanner(cfg)

    def plan(name: str, body: dict[str, Any]) -> Any:
        return planner.plan(name, cfg.routes[name], body, {}, Principal("master"), needs_of(body))

    assert plan("auto", NO_TOOLS).names == ["plain", "full"]
    tooled = plan("auto", TOOLS)
    assert (
        tooled.names == ["full"] and tooled.explain == "route=auto; policy=first-healthy; skipped=plain:tools"
    )
    error = refusal(plan, "bare", TOOLS)
    assert (error.message, error.param) == ("no candidate of `bare` supports tools", "tools")


def test_learned_planner_reads_team_overrides_and_the_header() -> None:
    cfg = config()
    planner = build_planner(cfg, {})
    route = cfg.routes["auto"]

    def plan(headers: dict[str, str], routing: dict[str, Any] | None = None, body: Any = NO_TOOLS) -> Any:
        team = None if routing is None else TeamRouting.model_validate(routing)
        return planner.plan("auto", route, body, headers, Principal("key", team_routing=team), needs_of(body))

    assert plan({}).names[0] == "plain"
    assert plan({}, {"routes": {"auto": {"min_tier": "large"}}}).names == ["full"]
    assert plan({}, {"routes": {"other": {"min_tier": "large"}}}).names[0] == "plain"
    assert "skipped=plain:tools" in plan({}, body=TOOLS).explain
    error = refusal(plan, {"x-switchyard-min-tier": "giant"})
    assert error.param == "x-switchyard-min-tier"
    error = refusal(plan, {"x-switchyard-min-tier": "large"}, {"max_tier": "small"})
    assert error.message == (
        "no candidate of `auto` meets x-switchyard-min-tier large and the team's max_tier small:"
        " it offers plain (local), full (large)"
    )
