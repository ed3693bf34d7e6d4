"""A team's routing overrides: what is accepted, what is refused (and where), how per-route values
combine with the team-wide ones."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from routing.overrides import RouteOverride, TeamRouting


def values(o: RouteOverride) -> tuple[Any, ...]:
    return o.quality, o.strong_fraction, o.min_tier, o.max_tier


def test_team_wide_and_per_route_values() -> None:
    team = TeamRouting.model_validate(
        {
            "quality": 0.8,
            "max_tier": "medium",
            "routes": {"code": {"strong_fraction": 0.5, "min_tier": "small"}, "chat": {"max_tier": "small"}},
        }
    )
    assert values(team.for_route("elsewhere")) == (0.8, None, None, "medium")
    # The route's knob replaces the team's as a pair; each tier bound falls back on its own.
    assert values(team.for_route("code")) == (None, 0.5, "small", "medium")
    assert values(team.for_route("chat")) == (0.8, None, None, "small")


def test_stored_form_leaves_out_what_was_not_set() -> None:
    team = TeamRouting.model_validate({"quality": 1, "routes": {"code": {"max_tier": "large"}}})
    assert team.model_dump() == {"quality": 1.0, "routes": {"code": {"max_tier": "large"}}}
    assert TeamRouting().model_dump() == {}


@pytest.mark.parametrize(
    ("raw", "where", "says"),
    [
        ({"quality": "high"}, ("quality",), "valid number"),
        ({"quality": True}, ("quality",), "valid number"),
        ({"quality": 1.5}, ("quality",), "less than or equal to 1"),
        ({"strong_fraction": -0.1}, ("strong_fraction",), "greater than or equal to 0"),
        ({"quality": float("nan")}, ("quality",), "finite number"),
        ({"qualty": 0.8}, ("qualty",), "Extra inputs are not permitted"),
        ({"max_tier": "giant"}, ("max_tier",), "'local', 'small', 'medium' or 'large'"),
        ({"quality": 0.5, "strong_fraction": 0.2}, (), "quality or strong_fraction, not both"),
        ({"min_tier": "large", "max_tier": "small"}, (), "min_tier large is above max_tier small"),
        ({"max_tier": "small", "routes": {"a": {"min_tier": "large"}}}, (), "routes.a: min_tier large"),
        ({"routes": {"a": 0.5}}, ("routes", "a"), "valid dictionary"),
        ({"routes": {"a": {"qualty": 1}}}, ("routes", "a", "qualty"), "Extra inputs"),
        ({"routes": {"": {}}}, ("routes", "", "[key]"), "at least 1 character"),
        ({"routes": {"a\x00": {}}}, ("routes", "a\x00", "[key]"), "match pattern"),
        ([0.5], (), "valid dictionary"),
    ],
)
def test_invalid_overrides_say_which_field(raw: Any, where: tuple[str, ...], says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TeamRouting.model_validate(raw)
    error = caught.value.errors()[0]
    assert error["loc"][: len(where)] == where and says in error["msg"], error
