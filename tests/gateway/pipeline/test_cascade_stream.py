"""Cascade decisions on streams: held back up to `cascade_hold_tokens`, then released (kept) or
replaced by the next tier's stream (escalated); the client sees only the final answer, without the
logprobs it did not ask for, and its first token no later than the hold allows."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from tests.gateway.pipeline.conftest import (
    BIG_PRICE,
    FINAL,
    HOLD,
    MASTER_KEY,
    SMALL_PRICE,
    CascadeGateway,
    cost,
)

HELLO = [{"role": "user", "content": "say hello to me"}]
WORDS = 4
LONG = 200  # tokens of the long-* models, 10 ms apart: two seconds of stream


@dataclass
class Streamed:
    headers: dict[str, str]
    chunks: list[dict[str, Any]] = field(default_factory=list)
    first_content_s: float | None = None
    total_s: float = 0.0

    @property
    def text(self) -> str:
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in self.chunks if c["choices"])

    @property
    def logprobs(self) -> list[dict[str, Any]]:
        choices = [ch for c in self.chunks for ch in c["choices"] if ch.get("logprobs")]
        return [t for ch in choices for t in ch["logprobs"]["content"]]


def stream(gateway: CascadeGateway, route: str, **extra: Any) -> Streamed:
    body = {"model": route, "messages": HELLO, "stream": True, **extra}
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    started = time.perf_counter()
    with (
        httpx.Client(base_url=gateway.url, timeout=20.0) as http,
        http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as resp,
    ):
        assert resp.status_code == 200, resp.read()
        out = Streamed(dict(resp.headers))
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = orjson.loads(line.removeprefix("data: "))
            out.chunks.append(chunk)
            if out.first_content_s is None and any(c["delta"].get("content") for c in chunk["choices"]):
                out.first_content_s = time.perf_counter() - started
    out.total_s = time.perf_counter() - started
    return out


@pytest.mark.parametrize(
    ("route", "explain"),
    [
        ("cascade-c41", "cascade=escalated; conf=0.41<0.60"),
        ("cascade-c59", "cascade=escalated; conf=0.59<0.60"),
        ("cascade-c60", "cascade=kept; conf=0.60>=0.60"),
        ("cascade-c83", "cascade=kept; conf=0.83>=0.60"),
    ],
)
def test_a_short_answer_is_decided_at_its_end(gateway: CascadeGateway, route: str, explain: str) -> None:
    before = len(gateway.upstream_calls)
    got = stream(gateway, route)
    calls = gateway.upstream_calls[before:]
    assert explain in got.headers["x-switchyard-route"]
    assert calls[0].body["logprobs"] is True and calls[0].body["stream"] is True
    if "escalated" in explain:
        assert got.text == FINAL and got.headers["x-switchyard-model"] == "big" and len(calls) == 2
    else:
        assert got.text == "tok0 tok1 tok2 tok3 tok4 tok5" and len(calls) == 1
    # Every chunk as an upstream sends it unasked: "logprobs": null.
    assert all(ch["logprobs"] is None for c in got.chunks for ch in c["choices"])


def test_an_escalated_stream_is_billed_and_recorded_for_both_calls(gateway: CascadeGateway) -> None:
    got = stream(gateway, "cascade-c41")
    assert got.headers["x-switchyard-cost-usd"] == "pending"
    row = gateway.record(got.headers["x-switchyard-request-id"])
    wasted = cost(WORDS, 6, SMALL_PRICE)  # the whole first answer came, with its usage
    assert row.escalated is True and row.streamed is True and row.deployment == "big"
    assert row.wasted_cost_usd == wasted and row.cost_usd == wasted + cost(WORDS, 3, BIG_PRICE)
    assert (row.prompt_tokens, row.completion_tokens) == (2 * WORDS, 6 + 3)


def test_a_long_sure_answer_is_released_after_the_hold_and_streamed_on(gateway: CascadeGateway) -> None:
    got = stream(gateway, "cascade-long-sure")
    assert "cascade=kept; conf=0.90>=0.60" in got.headers["x-switchyard-route"]
    assert got.text == " ".join(f"tok{i}" for i in range(LONG))
    assert got.first_content_s is not None
    # The first token waits for the hold (HOLD tokens 10 ms apart), not for the answer (LONG of them).
    assert HOLD * 0.008 <= got.first_content_s < LONG * 0.01 / 2 <= got.total_s
    row = gateway.record(got.headers["x-switchyard-request-id"])
    assert row.escalated is False and row.completion_tokens == LONG
    assert row.ttft_ms is not None and row.ttft_ms < LONG * 10 / 2


def test_a_long_unsure_answer_is_dropped_at_the_hold(gateway: CascadeGateway) -> None:
    got = stream(gateway, "cascade-long-unsure")
    assert "cascade=escalated; conf=0.30<0.60" in got.headers["x-switchyard-route"]
    assert got.text == FINAL
    # Decided after HOLD tokens: the rest of the first answer is never waited for.
    assert got.total_s < LONG * 0.01 / 2
    row = gateway.record(got.headers["x-switchyard-request-id"])
    # The first stream was cut before its usage came: its tokens are counted (the prompt by tiktoken),
    # the held ones and any it sent while the escalation was awaited.
    first_prompt, first_out = row.prompt_tokens - WORDS, row.completion_tokens - 3
    assert row.escalated is True and row.tokens_estimated is True
    assert HOLD <= first_out < LONG / 2
    assert row.wasted_cost_usd == cost(first_prompt, first_out, SMALL_PRICE)
    assert row.cost_usd == row.wasted_cost_usd + cost(WORDS, 3, BIG_PRICE)


def test_a_client_that_asked_for_logprobs_gets_the_final_streams(gateway: CascadeGateway) -> None:
    kept = stream(gateway, "cascade-c83", logprobs=True)
    assert [t["token"] for t in kept.logprobs] == ["tok0", " tok1", " tok2", " tok3", " tok4", " tok5"]
    escalated = stream(gateway, "cascade-c41", logprobs=True)
    assert "".join(t["token"] for t in escalated.logprobs) == FINAL


def test_a_stream_without_logprobs_is_not_held(gateway: CascadeGateway) -> None:
    got = stream(gateway, "cascade-no-logprobs")
    assert "cascade=unchecked; no_logprobs=anthropic" in got.headers["x-switchyard-route"]
    assert got.text == "Hello from anthropic!"


def test_the_usage_chunk_reaches_only_a_client_that_asked(gateway: CascadeGateway) -> None:
    asked = stream(gateway, "cascade-c41", stream_options={"include_usage": True})
    assert asked.chunks[-1]["usage"]["completion_tokens"] == 3 and asked.text == FINAL
    unasked = stream(gateway, "cascade-c41")
    assert all(not c.get("usage") for c in unasked.chunks)


def test_cost_header_of_a_kept_stream_is_pending_and_recorded(gateway: CascadeGateway) -> None:
    got = stream(gateway, "cascade-c83")
    row = gateway.record(got.headers["x-switchyard-request-id"])
    assert row.cost_usd == cost(WORDS, 6, SMALL_PRICE) and row.wasted_cost_usd is None
    assert Decimal(0) < row.cost_usd


def test_a_client_that_leaves_during_the_hold_is_recorded_and_billed(gateway: CascadeGateway) -> None:
    body = {"model": "cascade-long-sure", "messages": HELLO, "stream": True}
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    # Gone after half the hold: before the gateway answers anything.
    timeout = httpx.Timeout(5.0, read=HOLD * 0.01 / 2)
    with httpx.Client(base_url=gateway.url, timeout=timeout) as http, pytest.raises(httpx.ReadTimeout):
        http.post("/v1/chat/completions", json=body, headers=headers)
    row = gateway.record_of("cascade-long-sure", 499)
    assert row.error_type == "client_disconnected" and row.deployment == "long-sure"
    assert row.tokens_estimated is True and 0 < row.completion_tokens < HOLD
    assert row.cost_usd == cost(row.prompt_tokens, row.completion_tokens, SMALL_PRICE)
    assert row.escalated is False
