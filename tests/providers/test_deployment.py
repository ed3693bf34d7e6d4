"""A deployment's `defaults:`: validated as config (errors name the field), applied per request."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, load_config, parse_config
from providers.deployment import Deployment
from tests.integration.gateway_proc import REPO_ROOT


def _config(defaults: Any) -> None:
    parse_config({"models": [{"name": "a", "model": "m", "defaults": defaults}]}, {})


@pytest.mark.parametrize(
    ("defaults", "error"),
    [
        ({"temprature": 0.2}, r"models\.0\.defaults\.temprature: Extra inputs are not permitted"),
        ({"temperature": "hot"}, r"models\.0\.defaults\.temperature: .*valid number"),
        ({"temperature": True}, r"models\.0\.defaults\.temperature: .*not a boolean"),
        ({"temperature": 2.5}, r"models\.0\.defaults\.temperature: .*less than or equal to 2"),
        ({"max_tokens": 0}, r"models\.0\.defaults\.max_tokens: .*greater than or equal to 1"),
        ({"max_tokens": 2.5}, r"models\.0\.defaults\.max_tokens: .*integer"),
        ({"max_tokens": 5, "max_completion_tokens": 5}, r"models\.0\.defaults: .*not both"),
        ([0.2], r"models\.0\.defaults: .*valid dictionary"),
    ],
)
def test_bad_defaults_are_a_config_error_naming_the_field(defaults: Any, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        _config(defaults)


def test_defaults_from_environment_variables_are_numbers() -> None:
    cfg = parse_config(
        {
            "models": [
                {"name": "a", "model": "m", "defaults": {"temperature": "${T:-0.2}", "max_tokens": "${N}"}}
            ]
        },
        {"N": "256"},
    )
    assert cfg.models[0].upstream_body({}) == {"model": "m", "temperature": 0.2, "max_tokens": 256}


def test_upstream_body_fills_only_what_the_request_leaves_out() -> None:
    dep = Deployment(name="a", model="up", defaults={"temperature": 0.2, "top_p": 0.9, "max_tokens": 256})
    body = {"model": "a", "messages": [], "temperature": 1.0, "top_p": None}
    assert dep.upstream_body(body) == {
        "model": "up",
        "messages": [],
        "temperature": 1.0,
        "top_p": 0.9,  # null counts as left out
        "max_tokens": 256,
    }
    assert body["model"] == "a" and body["top_p"] is None  # the client's body is not touched
    capped = dep.upstream_body({"max_completion_tokens": 9})
    assert capped["max_completion_tokens"] == 9 and "max_tokens" not in capped
    assert Deployment(name="a", model="up").upstream_body({"x": 1}) == {"x": 1, "model": "up"}


def test_the_example_config_loads() -> None:
    cfg = load_config(REPO_ROOT / "switchyard.example.yaml", {"OPENAI_API_KEY": "sk-x"})
    [mini] = [d for d in cfg.models if d.name == "gpt-4o-mini"]
    assert mini.upstream_body({})["max_tokens"] == 1024
