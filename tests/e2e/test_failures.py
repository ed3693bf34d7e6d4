"""Failure handling seen from the outside: retries, fallbacks, cooldown, timeouts, refused connections,
streams that die, clients that hang up. Every name used here is its own deployment (see gateway_harness), so
the call counts, cooldowns and load-balancing turns below are deterministic."""

from __future__ import annotations

import asyncio
import time

import anthropic
import httpx
import openai
import pytest

from tests.e2e.gateway_harness import HANG_TIMEOUT_S, MASTER_KEY, Gateway, error_of, wait_for

HELLO = [{"role": "user", "content": "Say hello to the gateway"}]


def _upstream_calls(gateway: Gateway, model: str) -> int:
    return sum(
        1 for r in gateway.openai_requests if isinstance(r.body, dict) and r.body.get("model") == model
    )


def _still_serving(client: openai.OpenAI, gateway: Gateway) -> None:
    assert gateway.healthy()
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert resp.choices[0].message.content == "Hello from openai!"


# --------------------------------------------------------------------------- retries


def test_retry_recovers_a_flaky_upstream(client: openai.OpenAI, gateway: Gateway) -> None:
    raw = client.chat.completions.with_raw_response.create(model="flaky-1-retry", messages=HELLO)
    assert raw.parse().choices[0].message.content == "Hello from openai!"
    assert raw.headers["x-switchyard-model"] == "flaky-1-retry"
    # one failed attempt (500), one retry that answered, both at the same deployment
    assert gateway.openai_fake.app.state.flaky_counts["flaky-1-retry"] == 2
    assert _upstream_calls(gateway, "flaky-1-retry") == 2
    assert 'switchyard_requests_total{model="flaky-1-retry",deployment="flaky-1-retry",status="200"} 1' in (
        gateway.metrics()
    )


def test_retry_is_not_reported_as_a_fallback(client: openai.OpenAI, gateway: Gateway) -> None:
    raw = client.chat.completions.with_raw_response.create(model="flaky-1-header", messages=HELLO)
    assert gateway.openai_fake.app.state.flaky_counts["flaky-1-header"] == 2
    assert raw.headers["x-switchyard-model"] == "flaky-1-header"
    assert raw.headers["x-switchyard-route"] == "direct; attempts=2"


def test_no_retry_on_a_client_error(client: openai.OpenAI, gateway: Gateway) -> None:
    before = _upstream_calls(gateway, "fail-400")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="fail-400", messages=HELLO)
    assert _upstream_calls(gateway, "fail-400") == before + 1


def test_429_is_retried_then_surfaced(client: openai.OpenAI, gateway: Gateway) -> None:
    before = _upstream_calls(gateway, "fail-429")
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="fail-429", messages=HELLO)
    assert _upstream_calls(gateway, "fail-429") == before + 2  # retries=1
    assert err.value.response.headers["retry-after"] == "0"


# --------------------------------------------------------------------------- fallbacks


def test_fallback_to_the_second_deployment_of_a_name(client: openai.OpenAI) -> None:
    # first call of this name: the load balancer starts with fallback#1, a closed port
    raw = client.chat.completions.with_raw_response.create(model="fallback", messages=HELLO)
    assert raw.parse().choices[0].message.content == "Hello from openai!"
    assert raw.headers["x-switchyard-model"] == "fallback#2"
    assert "fallbacks=1" in raw.headers["x-switchyard-route"]


def test_fallback_to_the_routes_next_candidate(client: openai.OpenAI, gateway: Gateway) -> None:
    before = _upstream_calls(gateway, "fail-500")
    raw = client.chat.completions.with_raw_response.create(model="auto-fallback", messages=HELLO)
    assert raw.parse().choices[0].message.content == "Hello from openai!"
    assert raw.headers["x-switchyard-model"] == "gpt-4o-mini"
    route = raw.headers["x-switchyard-route"]
    assert "route=auto-fallback" in route and "fallbacks=1" in route
    assert _upstream_calls(gateway, "fail-500") == before + 2  # `broken`: first attempt + one retry

    # `broken` failed cooldown_failures times in a row: it now sits out, and a streamed call goes
    # straight to the next candidate
    with client.chat.completions.with_streaming_response.create(
        model="auto-fallback", messages=HELLO, stream=True
    ) as streamed:
        assert streamed.headers["x-switchyard-model"] == "gpt-4o-mini"
        assert "fallbacks" not in streamed.headers["x-switchyard-route"]
        text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
    assert text == "Hello from openai!"
    assert _upstream_calls(gateway, "fail-500") == before + 2


def test_cooldown_skips_a_failing_deployment(client: openai.OpenAI) -> None:
    served = []
    for _ in range(4):
        raw = client.chat.completions.with_raw_response.create(model="cooldown", messages=HELLO)
        assert raw.parse().choices[0].message.content == "Hello from openai!"
        served.append((raw.headers["x-switchyard-model"], raw.headers["x-switchyard-route"]))
    # call 1 started at cooldown#1 (closed port), failed twice, fell back, and cooled #1 down;
    # calls 2-4 (of which 3 would start at #1 again by rotation) never touch it
    assert served[0] == ("cooldown#2", "direct; attempts=3; fallbacks=1")
    assert served[1:] == [("cooldown#2", "direct")] * 3


# --------------------------------------------------------------------------- timeouts, refused


def test_hanging_upstream_times_out_with_504(client: openai.OpenAI, gateway: Gateway) -> None:
    for stream in (False, True):
        before = _upstream_calls(gateway, "hang")
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as err:
            client.chat.completions.create(model="hang", messages=HELLO, stream=stream)
        elapsed = time.monotonic() - started
        assert err.value.status_code == 504
        assert err.value.body["type"] == "timeout_error"
        # the fake would answer after 3 s: the gateway gave up at the deployment's timeout
        assert HANG_TIMEOUT_S * 0.8 < elapsed < 2.9, elapsed
        # a timeout moves on instead of retrying the same deployment
        assert _upstream_calls(gateway, "hang") == before + 1


def test_hanging_upstream_falls_back(client: openai.OpenAI) -> None:
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model="hang-fallback", messages=HELLO)
    assert time.monotonic() - started < 2.9  # the hanging fake would answer after 3 s
    assert raw.parse().choices[0].message.content == "Hello from openai!"
    assert raw.headers["x-switchyard-model"] == "hang-fallback#2"
    assert "fallbacks=1" in raw.headers["x-switchyard-route"]


def test_connection_refused_is_502(client: openai.OpenAI, gateway: Gateway) -> None:
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as err:
            client.chat.completions.create(model="refused", messages=HELLO, stream=stream)
        assert err.value.status_code == 502
        assert err.value.body["type"] == "api_connection_error"
        assert "Traceback" not in err.value.message
    resp = httpx.post(
        gateway.url + "/v1/embeddings",
        json={"model": "refused", "input": "x"},
        headers={"authorization": f"Bearer {MASTER_KEY}"},
    )
    assert resp.status_code == 502
    error_of(resp)


def test_refused_with_anthropic_sdk(claude_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.InternalServerError) as err:
        claude_client.messages.create(model="refused", max_tokens=16, messages=HELLO)
    assert err.value.status_code == 502
    assert err.value.body["type"] == "error"


# --------------------------------------------------------------------------- broken streams


def test_stream_dying_midway_raises_in_the_sdk(client: openai.OpenAI, gateway: Gateway) -> None:
    received: list[str] = []
    stream = client.chat.completions.create(model="die-midstream", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Hello from"  # two content chunks made it before the drop
    assert "interrupted" in err.value.message or "upstream" in err.value.message
    _still_serving(client, gateway)


def test_body_dying_midway_is_retried_then_502(client: openai.OpenAI, gateway: Gateway) -> None:
    before = _upstream_calls(gateway, "die-midstream")
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="die-midstream", messages=HELLO)
    assert err.value.status_code == 502
    # nothing reached the client yet, so the broken answer was retried (retries=1)
    assert _upstream_calls(gateway, "die-midstream") == before + 2
    _still_serving(client, gateway)


async def test_stream_dying_midway_raises_async(gateway: Gateway, aclient: openai.AsyncOpenAI) -> None:
    stream = await aclient.chat.completions.create(
        model="die-midstream", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    received = []
    with pytest.raises(openai.APIError):
        async for chunk in stream:
            received.append(chunk)
    assert received
    assert gateway.healthy()


@pytest.mark.parametrize("model", ["die-midstream", "claude-die-midstream"])
def test_stream_dying_midway_with_anthropic_sdk(
    claude_client: anthropic.Anthropic, client: openai.OpenAI, gateway: Gateway, model: str
) -> None:
    text: list[str] = []
    with (
        pytest.raises(anthropic.APIError),
        claude_client.messages.stream(model=model, max_tokens=64, messages=HELLO) as stream,
    ):
        for piece in stream.text_stream:
            text.append(piece)
    assert "".join(text).startswith("Hello")
    _still_serving(client, gateway)


# --------------------------------------------------------------------------- client disconnects


def test_client_disconnect_mid_stream_cancels_the_upstream(gateway: Gateway) -> None:
    slow = gateway.slow
    slow.reset()
    body = {"model": "slow", "messages": HELLO, "stream": True}
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    started = time.monotonic()
    with (
        httpx.Client(timeout=5.0) as http,
        http.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers=headers) as resp,
    ):
        assert resp.status_code == 200
        seen = 0
        for line in resp.iter_lines():
            if line.startswith("data: ") and '"content":"t' in line:
                seen += 1
                if seen == 2:
                    break
        # relayed as it arrives: the whole upstream stream would take 10 s
        assert time.monotonic() - started < 5.0
    # leaving the block closes the connection mid-stream
    assert wait_for(slow.disconnected.is_set, timeout=3.0), "the upstream never saw the gateway hang up"
    assert slow.sent < slow.chunks, slow.sent
    assert gateway.healthy()


def test_client_disconnect_before_the_answer_cancels_the_upstream(gateway: Gateway) -> None:
    slow = gateway.slow
    slow.reset()
    body = {"model": "slow", "messages": HELLO}
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=1.5)
    assert slow.started.is_set()
    assert wait_for(slow.disconnected.is_set, timeout=3.0), "the upstream never saw the gateway hang up"
    assert wait_for(
        lambda: (
            'switchyard_requests_total{model="slow",deployment="none",status="499"}' in gateway.metrics()
            or 'model="slow",deployment="slow",status="499"' in gateway.metrics()
        )
    )


async def test_concurrent_streams_do_not_mix(gateway: Gateway, aclient: openai.AsyncOpenAI) -> None:
    greetings = {
        "gpt-4o-mini": "Hello from openai!",
        "claude": "Hello from anthropic!",
        "gemini": "Hello from gemini!",
    }

    async def one(model: str) -> tuple[str, str]:
        stream = await aclient.chat.completions.create(model=model, messages=HELLO, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        return model, text

    results = await asyncio.gather(*(one(m) for m in list(greetings) * 8))
    assert all(text == greetings[model] for model, text in results), results


def test_gateway_survives_everything(client: openai.OpenAI, gateway: Gateway) -> None:
    _still_serving(client, gateway)
    assert httpx.get(gateway.url + "/health/ready").status_code == 200


# --------------------------------------------------------------------------- provider faults, both SDKs

PROVIDER_FAULTS = [
    (f"{provider}-{fault}", fault)
    for provider in ("claude", "gemini")
    for fault in ("fail-400", "fail-429", "fail-500")
]
OPENAI_ERRORS = {
    "fail-400": openai.BadRequestError,
    "fail-429": openai.RateLimitError,
    "fail-500": openai.InternalServerError,
}
ANTHROPIC_ERRORS = {
    "fail-400": anthropic.BadRequestError,
    "fail-429": anthropic.RateLimitError,
    "fail-500": anthropic.InternalServerError,
}


@pytest.mark.parametrize(("model", "fault"), PROVIDER_FAULTS)
def test_provider_faults_raise_the_sdks_own_errors(
    client: openai.OpenAI, claude_client: anthropic.Anthropic, model: str, fault: str
) -> None:
    status = int(fault.removeprefix("fail-"))
    for stream in (False, True):
        with pytest.raises(OPENAI_ERRORS[fault]) as oa_err:
            client.chat.completions.create(model=model, messages=HELLO, stream=stream)
        assert oa_err.value.status_code == status
        assert oa_err.value.response.headers["x-switchyard-request-id"].startswith("req_")
        with pytest.raises(ANTHROPIC_ERRORS[fault]) as an_err:
            if stream:
                with claude_client.messages.stream(model=model, max_tokens=16, messages=HELLO) as s:
                    s.get_final_message()
            else:
                claude_client.messages.create(model=model, max_tokens=16, messages=HELLO)
        assert an_err.value.status_code == status
        assert an_err.value.body["type"] == "error"
        if status == 429:
            assert oa_err.value.response.headers["retry-after"] == "0"
            assert an_err.value.response.headers["retry-after"] == "0"


def test_overloaded_before_content_is_a_529(
    client: openai.OpenAI, claude_client: anthropic.Anthropic
) -> None:
    # Anthropic's 200 + `event: error` before any content: still a proper status for the client
    with (
        pytest.raises(anthropic.OverloadedError) as err,
        claude_client.messages.stream(
            model="claude-overloaded-midstream", max_tokens=16, messages=HELLO
        ) as s,
    ):
        s.get_final_message()
    assert err.value.status_code == 529
    assert err.value.body["error"]["type"] == "overloaded_error"
    with pytest.raises(openai.InternalServerError) as oa_err:
        client.chat.completions.create(model="claude-overloaded-midstream", messages=HELLO, stream=True)
    assert oa_err.value.status_code == 529


def test_overloaded_after_content_raises_in_both_sdks(
    client: openai.OpenAI, claude_client: anthropic.Anthropic, gateway: Gateway
) -> None:
    text: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError),
        claude_client.messages.stream(model="claude-overloaded-late", max_tokens=16, messages=HELLO) as s,
    ):
        text.extend(s.text_stream)
    assert "".join(text) == "Hello from"
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="claude-overloaded-late", messages=HELLO, stream=True))
    _still_serving(client, gateway)


def test_native_stream_keeps_the_upstreams_error_event(claude_client: anthropic.Anthropic) -> None:
    with (
        pytest.raises(anthropic.APIStatusError) as err,
        claude_client.messages.stream(model="claude-overloaded-late", max_tokens=16, messages=HELLO) as s,
    ):
        s.get_final_message()
    assert err.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
