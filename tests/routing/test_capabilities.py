"""What a body needs of the model (tools, response_format, vision, logprobs), and how the policy
drops the candidates that lack it."""

from __future__ import annotations

from typing import Any

import pytest

from providers.anthropic_translate import anthropic_request_to_openai
from routing.artifact import RouterArtifact
from routing.capabilities import Need, Unroutable, missing, needs_of
from routing.policy import Candidate, RouteContext, Router, RouteSpec

HI = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}


def caps(body: dict[str, Any]) -> list[str]:
    return [n.capability for n in needs_of(body)]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"messages": HI}, []),
        ({"messages": HI, "tools": [TOOL]}, ["tools"]),
        ({"messages": HI, "tools": [TOOL], "tool_choice": "auto"}, ["tools"]),
        ({"messages": HI, "tools": [TOOL], "tool_choice": "none"}, []),
        ({"messages": HI, "tools": []}, []),
        ({"messages": HI, "functions": [TOOL["function"]]}, ["tools"]),
        ({"messages": HI, "functions": [TOOL["function"]], "function_call": "none"}, []),
        ({"messages": HI, "response_format": {"type": "json_object"}}, ["response_format"]),
        (
            {"messages": HI, "response_format": {"type": "json_schema", "json_schema": {}}},
            ["response_format"],
        ),
        ({"messages": HI, "response_format": {"type": "text"}}, []),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "see"}, IMAGE]}]}, ["vision"]),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "no image"}]}]}, []),
        ({"messages": HI, "logprobs": True, "top_logprobs": 2}, ["logprobs"]),
        ({"messages": HI, "logprobs": False}, []),
        ({"prompt": "legacy", "logprobs": 0}, ["logprobs"]),
        ({"prompt": "legacy", "logprobs": None}, []),
        # Malformed shapes are the validators' business; here they need nothing and never raise.
        ({"messages": "x", "tools": "x", "response_format": "json"}, []),
        ({"messages": [None, {"content": [None, 3]}]}, []),
    ],
)
def test_needs_of_an_openai_body(body: dict[str, Any], expected: list[str]) -> None:
    assert caps(body) == expected


def test_needs_point_at_the_field_that_asks() -> None:
    body = {"messages": [{"role": "user", "content": [IMAGE]}], "functions": [{"name": "f"}]}
    assert needs_of(body) == (Need("tools", "functions"), Need("vision", "messages"))


def test_needs_of_an_anthropic_body_read_through_the_translation() -> None:
    tool = {"name": "f", "input_schema": {"type": "object"}}
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    base = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    assert caps(anthropic_request_to_openai({**base, "tools": [tool]})) == ["tools"]
    assert caps(anthropic_request_to_openai({**base, "tools": [tool], "tool_choice": {"type": "none"}})) == []
    pictured = {**base, "messages": [{"role": "user", "content": [image, {"type": "text", "text": "?"}]}]}
    assert caps(anthropic_request_to_openai(pictured)) == ["vision"]


def test_missing_names_what_no_offer_has() -> None:
    tools, vision = Need("tools", "tools"), Need("vision", "messages")
    assert missing([tools], [{"tools"}]) is None
    assert missing([tools], [set(), {"logprobs"}]) == ("tools", "tools")
    assert missing([tools, vision], [set()]) == ("tools and vision", "tools")
    assert missing([tools, vision], [{"vision"}]) == ("tools", "tools")
    # Each is offered, never both by one deployment.
    assert missing([tools, vision], [{"tools"}, {"vision"}]) == ("tools together with vision", "tools")


# --------------------------------------------------------------------------- the policy

PLAIN = Candidate("plain", "local", 0.0, 0.0, frozenset())
SMALL = Candidate("mini", "small", 0.15, 0.6)
LARGE = Candidate("big", "large", 2.5, 10.0)
TOOLS = {"messages": HI, "tools": [TOOL]}


@pytest.fixture
def router(artifact: RouterArtifact) -> Router:
    return Router(artifact)


def test_candidates_lacking_a_capability_are_skipped_and_named(router: Router) -> None:
    route = RouteSpec(quality=0.5, tools_min_tier=None)
    plain = router.decide({"messages": HI}, route, [PLAIN, SMALL, LARGE])
    assert plain.chosen is PLAIN and "skipped" not in plain.explain()
    d = router.decide(TOOLS, route, [PLAIN, SMALL, LARGE], RouteContext(needs=needs_of(TOOLS)))
    assert d.chosen is SMALL and PLAIN not in d.candidates
    assert d.skipped == (("plain", "tools"),) and "skipped=plain:tools" in d.explain()
    assert "local" not in d.costs and "plain" not in d.costs


def test_no_capable_candidate_is_unroutable(router: Router) -> None:
    needs = needs_of({**TOOLS, "response_format": {"type": "json_object"}})
    with pytest.raises(Unroutable) as caught:
        router.decide(TOOLS, RouteSpec(name="cheap"), [PLAIN], RouteContext(needs=needs))
    assert caught.value.message == "no candidate of `cheap` supports tools and response_format"
    assert caught.value.param == "tools"


def test_a_tier_pin_counts_only_capable_candidates(router: Router) -> None:
    plain_large = Candidate("plain-big", "large", 1.0, 1.0, frozenset())
    ctx = RouteContext(needs=needs_of(TOOLS), min_tier="large")
    with pytest.raises(Unroutable) as caught:
        router.decide(TOOLS, RouteSpec(), [SMALL, plain_large], ctx)
    assert caught.value.message == (
        "no candidate of `auto` meets x-switchyard-min-tier large: it offers mini (small)"
        " (skipped for a missing capability: plain-big)"
    )
