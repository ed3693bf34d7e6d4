"""A route's `shadow:` in the live config: a judge the config serves and a rate in [0, 1] are taken;
anything else is an error naming where, from the admin API's validation and the file's parser."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, parse_config
from gateway.live.secrets import SecretBox
from gateway.live.validate import validate_document


def document(shadow: Any) -> dict[str, Any]:
    models = [
        {
            "name": n,
            "provider": "openai_compatible",
            "model": n,
            "api_base": "http://127.0.0.1:9/v1",
            "tier": t,
        }
        for n, t in (("cheap", "small"), ("strong", "large"))
    ]
    return {"models": models, "routes": {"auto": {"candidates": ["cheap", "strong"], "shadow": shadow}}}


def test_a_shadowed_route_is_taken() -> None:
    v = validate_document(document({"rate": 0.02, "judge": "strong"}), env={}, box=SecretBox(None))
    assert v.valid, v.errors
    assert v.config is not None
    shadow = v.config.routes["auto"].shadow
    assert shadow is not None and (shadow.rate, shadow.judge, shadow.against) == (0.02, "strong", "strongest")


@pytest.mark.parametrize(
    ("shadow", "where"),
    [
        ({"rate": 0.1, "judge": "nobody"}, "routes.auto.shadow.judge"),
        ({"rate": 1.5, "judge": "strong"}, "routes.auto.shadow.rate"),
        ({"judge": "strong"}, "routes.auto.shadow.rate"),
        ({"rate": 0.1, "judge": "strong", "against": "weakest"}, "routes.auto.shadow.against"),
        ({"rate": 0.1, "judge": "strong", "every": 3}, "routes.auto.shadow.every"),
    ],
)
def test_a_bad_shadow_is_an_error_naming_where(shadow: dict[str, Any], where: str) -> None:
    v = validate_document(document(shadow), env={}, box=SecretBox(None))
    assert where in [e["loc"] for e in v.errors], v.errors
    with pytest.raises(ConfigError):
        parse_config(document(shadow), {})
