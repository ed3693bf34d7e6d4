"""A route's cascade settings (`mode: cascade`, its threshold, `cascade_hold_tokens`) are checked
where every route is: each mistake is an error naming the route, and a good one round-trips."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, parse_config
from gateway.live.document import config_document
from gateway.live.secrets import SecretBox
from gateway.live.validate import validate_document


def _doc(**route: Any) -> dict[str, Any]:
    models = [
        {"name": n, "model": n, "api_base": "http://127.0.0.1:9/v1", "tier": t}
        for n, t in (("cheap", "small"), ("strong", "large"))
    ]
    return {"models": models, "routes": {"auto": {"candidates": ["cheap", "strong"], **route}}}


@pytest.mark.parametrize(
    ("route", "says"),
    [
        ({"mode": "cascade"}, "mode: cascade takes one of min_confidence or escalate_fraction"),
        (
            {"mode": "cascade", "min_confidence": 0.5, "escalate_fraction": 0.2},
            "mode: cascade takes one of min_confidence or escalate_fraction",
        ),
        ({"min_confidence": 0.5}, "min_confidence applies to mode: cascade only"),
        ({"escalate_fraction": 0.5}, "escalate_fraction applies to mode: cascade only"),
        ({"mode": "cascade", "min_confidence": 1.5}, "less than or equal to 1"),
        ({"mode": "cascade", "min_confidence": "high"}, "valid number"),
        ({"mode": "cascade", "escalate_fraction": -0.1}, "greater than or equal to 0"),
        ({"mode": "cascade", "min_confidence": 0.5, "cascade_hold_tokens": 0}, "greater than or equal to 1"),
        ({"mode": "cascade", "min_confidence": 0.5, "cascade_hold_tokens": "64"}, "valid integer"),
        ({"mode": "waterfall"}, "'single' or 'cascade'"),
    ],
)
def test_a_bad_cascade_is_an_error_naming_the_route(route: dict[str, Any], says: str) -> None:
    v = validate_document(_doc(**route), env={}, box=SecretBox(None))
    assert not v.valid
    assert any(e["loc"].startswith("routes.auto") and says in e["message"] for e in v.errors), v.errors
    with pytest.raises(ConfigError, match=r"routes\.auto"):
        parse_config(_doc(**route), env={})


def test_a_cascade_route_round_trips() -> None:
    config = parse_config(_doc(mode="cascade", escalate_fraction=0.25, cascade_hold_tokens=32), env={})
    route = config.routes["auto"]
    assert (route.mode, route.escalate_fraction, route.min_confidence, route.cascade_hold_tokens) == (
        "cascade",
        0.25,
        None,
        32,
    )
    stored = config_document(config)["routes"]["auto"]
    assert stored == {
        "candidates": ["cheap", "strong"],
        "mode": "cascade",
        "escalate_fraction": 0.25,
        "cascade_hold_tokens": 32,
    }
    assert (
        parse_config(_doc(mode="cascade", min_confidence=0.6), env={}).routes["auto"].cascade_hold_tokens
        == 64
    )
    assert parse_config(_doc(), env={}).routes["auto"].mode == "single"
