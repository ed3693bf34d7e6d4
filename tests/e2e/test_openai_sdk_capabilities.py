"""Capabilities end to end, through the official SDKs: a request that needs tools, JSON output or
image input never reaches a deployment without them (the local model used to answer such a request
200 with plain text). It goes to one that has them, or is a 400 naming the model and what is
missing; a tier pin no candidate meets is a 400 too.

This module's gateway: the embedded default's bundled local model `smollm2` (never loaded: each
request here that names it is refused before dispatch) and the OpenAI fake behind
  plain        configured `capabilities: []`, tier local
  mixed        two deployments: the first `capabilities: []`, the second the provider's defaults
  full         the provider's defaults, tier small
and the routes auto-caps [plain, full] (quality 0: the cheapest candidate unless it is skipped),
plain-only [plain] and local-only [smollm2].
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.defaults import default_config
from gateway.settings import Settings
from tests.e2e.gateway_harness import (
    CLAUDE_WEATHER_TOOL,
    CLIENT_TIMEOUT_S,
    MASTER_KEY,
    WEATHER_TOOL,
    gateway_settings,
)
from tests.e2e.openai_sdk_cases import HELLO, marker
from tests.fakes import openai_upstream
from tests.fakes.server import ServerThread

IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
PICTURE = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, IMAGE]}]


def bundled_local(state_dir: Path) -> Any:
    """The local deployment exactly as the embedded defaults configure it."""
    settings = Settings(_env_file=None, local_model=True, spool_dir=state_dir / "unused")  # type: ignore[call-arg]
    return next(d for d in default_config(settings).models if d.provider == "local")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ServerThread]]:
    state_dir = tmp_path_factory.mktemp("capabilities")
    with ServerThread(openai_upstream.create_app()) as fake:

        def oa(name: str, **extra: Any) -> dict[str, Any]:
            return {
                "name": name,
                "provider": "openai_compatible",
                "model": "gpt-4o-mini-upstream",
                "api_base": fake.url + "/v1",
                "api_key": "sk-upstream-openai",
                "timeout": 5.0,
                "price": {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
                **extra,
            }

        config = GatewayConfig.model_validate(
            {
                "models": [
                    bundled_local(state_dir),
                    oa("plain", tier="local", capabilities=[]),
                    oa("mixed", capabilities=[]),
                    oa("mixed"),
                    oa("full", tier="small"),
                ],
                "routes": {
                    "auto-caps": {"candidates": ["plain", "full"], "quality": 0.0, "tools_min_tier": None},
                    "plain-only": {"candidates": ["plain"]},
                    "local-only": {"candidates": ["smollm2"]},
                },
            }
        )
        with ServerThread(create_app(gateway_settings(state_dir), config)) as gw:
            yield gw.url, fake


@pytest.fixture(scope="module")
def client(gateway: tuple[str, ServerThread]) -> Iterator[openai.OpenAI]:
    url = gateway[0] + "/v1"
    with openai.OpenAI(base_url=url, api_key=MASTER_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S) as c:
        yield c


def reached_upstream(gateway: tuple[str, ServerThread], tag: str) -> bool:
    return any(isinstance(r.body, dict) and r.body.get("user") == tag for r in gateway[1].app.state.requests)


def refused(client: openai.OpenAI, **kwargs: Any) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**kwargs)
    assert caught.value.status_code == 400
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "invalid_request_error"
    return caught.value


# --------------------------------------------------------------------------- a model asked for by name

ASKS = {
    "tools": ({"messages": HELLO, "tools": [WEATHER_TOOL]}, "tools"),
    "response_format": ({"messages": HELLO, "response_format": {"type": "json_object"}}, "response_format"),
    "vision": ({"messages": PICTURE}, "messages"),
    "logprobs": ({"messages": HELLO, "logprobs": True}, "logprobs"),
}


@pytest.mark.parametrize("capability", list(ASKS))
@pytest.mark.parametrize("stream", [False, True])
def test_a_model_without_the_capability_is_a_400_naming_it(
    client: openai.OpenAI, gateway: tuple[str, ServerThread], capability: str, stream: bool
) -> None:
    body, param = ASKS[capability]
    tag = marker()
    error = refused(client, model="plain", user=tag, stream=stream, **body)
    assert error.body["message"] == f"plain does not support {capability}"  # type: ignore[index]
    assert error.body["param"] == param  # type: ignore[index]
    assert not reached_upstream(gateway, tag)


def test_tools_switched_off_need_no_tools(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="plain", messages=HELLO, tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert resp.choices[0].message.content and not resp.choices[0].message.tool_calls


def test_the_bundled_local_model_refuses_tools_instead_of_ignoring_them(client: openai.OpenAI) -> None:
    error = refused(client, model="smollm2", messages=HELLO, tools=[WEATHER_TOOL])
    assert error.body["message"] == "smollm2 does not support tools"  # type: ignore[index]
    error = refused(client, model="smollm2", messages=HELLO, response_format={"type": "json_object"})
    assert error.body["param"] == "response_format"  # type: ignore[index]
    error = refused(client, model="local-only", messages=HELLO, tools=[WEATHER_TOOL])
    assert error.body["message"] == "no candidate of `local-only` supports tools"  # type: ignore[index]


def test_a_load_balanced_name_passes_over_its_deployment_without_it(client: openai.OpenAI) -> None:
    def served(**kwargs: Any) -> tuple[str, str]:
        raw = client.chat.completions.with_raw_response.create(model="mixed", messages=HELLO, **kwargs)
        return raw.headers["x-switchyard-model"], raw.headers["x-switchyard-route"]

    assert {served() for _ in range(2)} == {("mixed#1", "direct"), ("mixed#2", "direct")}
    tooled = {served(tools=[WEATHER_TOOL]) for _ in range(4)}
    assert tooled == {("mixed#2", "direct; skipped=mixed#1:tools")}


# --------------------------------------------------------------------------- a routed name


def test_a_route_skips_candidates_without_it_and_says_so(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="auto-caps", messages=HELLO)
    assert raw.headers["x-switchyard-model"] == "plain"
    assert "skipped" not in raw.headers["x-switchyard-route"]

    raw = client.chat.completions.with_raw_response.create(
        model="auto-caps", messages=HELLO, tools=[WEATHER_TOOL]
    )
    assert raw.headers["x-switchyard-model"] == "full"
    assert "skipped=plain:tools" in raw.headers["x-switchyard-route"]
    calls = raw.parse().choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"

    raw = client.chat.completions.with_raw_response.create(
        model="auto-caps", messages=PICTURE, response_format={"type": "json_object"}
    )
    assert raw.headers["x-switchyard-model"] == "full"
    assert "skipped=plain:response_format+vision" in raw.headers["x-switchyard-route"]


def test_a_route_with_no_capable_candidate_is_a_400(client: openai.OpenAI) -> None:
    error = refused(client, model="plain-only", messages=PICTURE, tools=[WEATHER_TOOL])
    assert error.body["message"] == "no candidate of `plain-only` supports tools and vision"  # type: ignore[index]
    assert error.body["param"] == "tools"  # type: ignore[index]


def test_a_tier_pin_no_candidate_meets_is_a_400_not_a_downgrade(client: openai.OpenAI) -> None:
    error = refused(
        client, model="plain-only", messages=HELLO, extra_headers={"x-switchyard-min-tier": "medium"}
    )
    assert error.body["param"] == "x-switchyard-min-tier"  # type: ignore[index]
    assert error.body["message"] == (  # type: ignore[index]
        "no candidate of `plain-only` meets x-switchyard-min-tier medium: it offers plain (local)"
    )
    ok = client.chat.completions.with_raw_response.create(
        model="auto-caps", messages=HELLO, extra_headers={"x-switchyard-min-tier": "small"}
    )
    assert ok.headers["x-switchyard-model"] == "full" and "header>=small" in ok.headers["x-switchyard-route"]


# --------------------------------------------------------------------------- the Anthropic door, records


def test_the_anthropic_door_reads_the_same_needs(gateway: tuple[str, ServerThread]) -> None:
    with anthropic.Anthropic(
        base_url=gateway[0], api_key=MASTER_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
    ) as claude:
        with pytest.raises(anthropic.BadRequestError) as caught:
            claude.messages.create(model="plain", max_tokens=32, messages=HELLO, tools=[CLAUDE_WEATHER_TOOL])
        assert "plain does not support tools" in str(caught.value)
        routed = claude.messages.create(
            model="auto-caps", max_tokens=32, messages=HELLO, tools=[CLAUDE_WEATHER_TOOL]
        )
    assert [b.type for b in routed.content] == ["tool_use"]


def test_refusals_are_recorded(client: openai.OpenAI, gateway: tuple[str, ServerThread]) -> None:
    def refusals() -> int:
        text = httpx.get(gateway[0] + "/metrics", timeout=CLIENT_TIMEOUT_S).text
        label = 'switchyard_requests_total{model="plain-only",deployment="none",status="400"} '
        lines = [line for line in text.splitlines() if line.startswith(label)]
        return int(lines[0].rsplit(" ", 1)[1]) if lines else 0

    before = refusals()
    refused(client, model="plain-only", messages=HELLO, tools=[WEATHER_TOOL])
    assert refusals() == before + 1
