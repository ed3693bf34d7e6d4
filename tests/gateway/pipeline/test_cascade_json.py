"""Cascade decisions on complete (non-streamed) answers: escalate below the threshold, keep at or above
it, logprobs only where the client asked, both calls billed and recorded."""

from __future__ import annotations

from dataclasses import fields
from decimal import Decimal

import openai
import orjson
import pytest

from gateway.accounting.record import RequestRecord
from tests.gateway.pipeline.conftest import BIG_PRICE, FINAL, SMALL_PRICE, CascadeGateway, cost

HELLO = [{"role": "user", "content": "say hello to me"}]
WORDS = 4  # the fake's prompt tokens for HELLO: its words
SMALL_TOKENS = 6  # a conf-<p> model's answer
BIG_TOKENS = 3


def _ask(client: openai.OpenAI, route: str, **extra: object) -> tuple[dict[str, str], object]:
    raw = client.chat.completions.with_raw_response.create(model=route, messages=HELLO, **extra)  # type: ignore[call-overload]
    return dict(raw.headers), raw.parse()


@pytest.mark.parametrize(
    ("route", "escalated", "explain"),
    [
        ("cascade-c41", True, "cascade=escalated; conf=0.41<0.60"),
        ("cascade-c59", True, "cascade=escalated; conf=0.59<0.60"),
        ("cascade-c60", False, "cascade=kept; conf=0.60>=0.60"),
        ("cascade-c83", False, "cascade=kept; conf=0.83>=0.60"),
    ],
)
def test_escalates_exactly_below_the_threshold(
    gateway: CascadeGateway, client: openai.OpenAI, route: str, escalated: bool, explain: str
) -> None:
    before = len(gateway.upstream_calls)
    headers, answer = _ask(client, route)
    calls = gateway.upstream_calls[before:]
    assert explain in headers["x-switchyard-route"]
    # The cheap candidate is asked first, for logprobs; only an escalation asks the large one.
    assert calls[0].body["logprobs"] is True and calls[0].body["model"].startswith("conf-")
    if escalated:
        assert [c.body["model"] for c in calls] == [calls[0].body["model"], "gpt-4o"]
        assert "logprobs" not in calls[1].body
        assert headers["x-switchyard-model"] == "big" and answer.choices[0].message.content == FINAL
    else:
        assert len(calls) == 1 and headers["x-switchyard-model"] == route.removeprefix("cascade-")
        assert answer.choices[0].message.content.startswith("tok0 tok1")
    # Logprobs the client did not ask for never reach it.
    assert answer.choices[0].logprobs is None


def test_an_escalated_call_is_billed_and_recorded_for_both_calls(
    gateway: CascadeGateway, client: openai.OpenAI
) -> None:
    headers, answer = _ask(client, "cascade-c41")
    wasted = cost(WORDS, SMALL_TOKENS, SMALL_PRICE)
    final = cost(WORDS, BIG_TOKENS, BIG_PRICE)
    assert Decimal(headers["x-switchyard-cost-usd"]) == wasted + final
    assert "cascade=escalated; conf=0.41<0.60; from=c41; attempts=2" in headers["x-switchyard-route"]
    row = gateway.record(headers["x-switchyard-request-id"])
    assert row.escalated is True and row.deployment == "big" and row.tier == "large"
    assert row.wasted_cost_usd == wasted and row.cost_usd == wasted + final
    assert (row.prompt_tokens, row.completion_tokens) == (2 * WORDS, SMALL_TOKENS + BIG_TOKENS)
    assert answer.usage.completion_tokens == BIG_TOKENS  # the client is told of its answer only


def test_a_kept_call_is_recorded_as_one(gateway: CascadeGateway, client: openai.OpenAI) -> None:
    headers, _ = _ask(client, "cascade-c83")
    row = gateway.record(headers["x-switchyard-request-id"])
    assert row.escalated is False and row.wasted_cost_usd is None
    assert row.cost_usd == cost(WORDS, SMALL_TOKENS, SMALL_PRICE) == Decimal(headers["x-switchyard-cost-usd"])


def test_a_client_that_asked_for_logprobs_gets_the_final_answers(client: openai.OpenAI) -> None:
    _, kept = _ask(client, "cascade-c83", logprobs=True, top_logprobs=2)
    tokens = kept.choices[0].logprobs.content
    assert [t.token for t in tokens][:2] == ["tok0", " tok1"] and len(tokens[0].top_logprobs) == 2
    _, escalated = _ask(client, "cascade-c41", logprobs=True)
    assert "".join(t.token for t in escalated.choices[0].logprobs.content) == FINAL


def test_a_provider_without_logprobs_skips_the_check(gateway: CascadeGateway, client: openai.OpenAI) -> None:
    before = len(gateway.upstream_calls)
    headers, answer = _ask(client, "cascade-no-logprobs")
    assert "cascade=unchecked; no_logprobs=anthropic" in headers["x-switchyard-route"]
    assert headers["x-switchyard-model"] == "claude-small"
    assert answer.choices[0].message.content == "Hello from anthropic!"
    assert gateway.upstream_calls[before:] == []


def test_an_escalation_that_fails_keeps_the_first_answer(client: openai.OpenAI) -> None:
    headers, answer = _ask(client, "cascade-broken-top")
    assert "cascade=kept; conf=0.41<0.60; escalation_failed=500" in headers["x-switchyard-route"]
    assert headers["x-switchyard-model"] == "c41" and answer.choices[0].message.content.startswith("tok0")


def test_nothing_above_keeps_the_first_answer(client: openai.OpenAI) -> None:
    headers, _ = _ask(client, "cascade-one-tier")
    assert "cascade=kept; conf=0.41<0.60; no_higher_tier" in headers["x-switchyard-route"]
    assert headers["x-switchyard-model"] == "c41"


def test_escalate_fraction_escalates_below_the_deployments_recent_quantile(client: openai.OpenAI) -> None:
    """Until 10 confidences were seen nothing escalates; then the 0.3 quantile of the window is the
    threshold: of ten seen (0.10 ... 1.00), the fourth smallest, 0.40; with 0.35 added, of eleven, 0.35."""
    for i in range(10):
        raw = client.chat.completions.with_raw_response.create(
            model="cascade-fraction", messages=[{"role": "user", "content": f"p={(i + 1) / 10:.2f}"}]
        )
        assert f"cascade=kept; conf={(i + 1) / 10:.2f}; warming={i}/10" in raw.headers["x-switchyard-route"]
    for p, verdict in ((0.35, "escalated; conf=0.35<0.40"), (0.35, "kept; conf=0.35>=0.35")):
        raw = client.chat.completions.with_raw_response.create(
            model="cascade-fraction", messages=[{"role": "user", "content": f"p={p}"}]
        )
        assert f"cascade={verdict}; ef=0.30" in raw.headers["x-switchyard-route"]


def test_an_escalated_record_survives_the_spill_file(gateway: CascadeGateway, client: openai.OpenAI) -> None:
    """The spend writer spills records as JSON when the database is away: the cascade's columns too."""
    headers, _ = _ask(client, "cascade-c41")
    row = gateway.record(headers["x-switchyard-request-id"])
    # `capture` is not a log column (captured prompts have a table of their own).
    record = RequestRecord(
        **{f.name: getattr(row, f.name) for f in fields(RequestRecord) if f.name != "capture"}
    )
    again = RequestRecord.from_json(orjson.loads(orjson.dumps(record.to_json())))
    assert again == record and again.escalated is True
    assert again.wasted_cost_usd == cost(WORDS, SMALL_TOKENS, SMALL_PRICE)
