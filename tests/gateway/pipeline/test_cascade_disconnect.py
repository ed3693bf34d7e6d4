"""A client that hangs up in the middle of a cascade: while the first answer is held back, while the
escalated stream is relayed, and while an escalated complete call is awaited. Each time the upstream
call in flight is hung up on, exactly one record is written with what the calls that were made cost,
the key's budget counts that same cost (nothing left held), and the gateway serves the next request.

The slow calls are `tests.e2e.slow_upstream.SlowUpstream`s, which record the gateway hanging up: one as
the small tier (a stream of one token every 50 ms, held back for HOLD of them), one as the large
(streams as slowly; a complete call waits 10 s for the gateway to leave)."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from gateway.admin import service
from gateway.admin.schemas import KeyCreate, TeamCreate
from gateway.app import create_app
from gateway.config import parse_config
from gateway.db.engine import make_engine, session_factory
from gateway.db.models import RequestLog
from tests.e2e.gateway_harness import wait_for
from tests.e2e.slow_upstream import SlowUpstream
from tests.fakes import anthropic_upstream, openai_upstream
from tests.fakes.server import ServerThread
from tests.gateway.pipeline.conftest import (
    BIG_PRICE,
    MTOK,
    SMALL_PRICE,
    _oa,
    _route,
    cascade_settings,
    cost,
)

HELLO = [{"role": "user", "content": "say hello to me"}]
HOLD = 16
FIRST = cost(4, 6, SMALL_PRICE)  # what the fake bills conf-0.41's whole answer to HELLO
BUDGET = Decimal(10)


@dataclass
class Leaving:
    url: str
    db_url: str
    app: Any
    slow_small: SlowUpstream
    slow_big: SlowUpstream
    slow_unsure: SlowUpstream

    def records(self, key_id: str) -> list[RequestLog]:
        return asyncio.run(_records(self.db_url, key_id))

    def spent(self, key_id: str) -> tuple[Decimal, Decimal]:
        """What the limiter counts as spent and as still held on the key's (total) budget."""
        limiter = self.app.state.pipeline.control.limiter
        subject = f"key:{key_id}"
        return asyncio.run(limiter.spent(subject, "total")), asyncio.run(limiter.held(subject, "total"))

    def counters(self) -> dict[str, Decimal]:
        """/metrics' token and cost counters, summed over deployments."""
        totals: dict[str, Decimal] = {}
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            for name in ("switchyard_tokens_total", "switchyard_cost_usd_total"):
                if line.startswith(name + "{"):
                    kind = line.split('kind="')[1].split('"')[0] if "kind=" in line else "usd"
                    totals[kind] = totals.get(kind, Decimal(0)) + Decimal(line.rsplit(" ", 1)[1])
        return totals

    @property
    def background(self) -> int:
        return len(self.app.state.pipeline.background)


async def _records(url: str, key_id: str) -> list[RequestLog]:
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as s:
            return list((await s.execute(select(RequestLog).where(RequestLog.key_id == key_id))).scalars())
    finally:
        await engine.dispose()


async def _key(url: str) -> tuple[str, str]:
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as s:
            team = await service.create_team(s, TeamCreate(name=f"leave-{uuid.uuid4().hex[:8]}"), actor="t")
            made = await service.create_key(s, KeyCreate(team_id=team.id, budget_usd=BUDGET), actor="t")
    finally:
        await engine.dispose()
    return made.key, made.row.id


def _config(openai_url: str, small_url: str, big_url: str, anthropic_url: str, unsure_url: str) -> Any:
    base = openai_url + "/v1"
    models = [
        _oa(base, "unsure", "conf-0.41", "small", SMALL_PRICE),
        _oa(small_url + "/v1", "slow-small", "slow-small", "small", SMALL_PRICE),
        _oa(base, "big", "gpt-4o", "large", BIG_PRICE),
        _oa(big_url + "/v1", "slow-big", "slow-big", "large", BIG_PRICE),
        _oa(unsure_url + "/v1", "slow-unsure", "slow-unsure", "small", SMALL_PRICE),
        _oa(base, "long-unsure", "conf-0.3-words-200-ms-10", "small", SMALL_PRICE),
        # Answers nothing: its calls time out after 0.3 s, a 504.
        {**_oa(base, "hang-big", "hang", "large", BIG_PRICE), "timeout": 0.3},
        {
            # The Anthropic fake's `cached*` models report 10 cache-read and 5 cache-written tokens.
            "name": "cached-big",
            "provider": "anthropic",
            "model": "cached-upstream",
            "api_base": anthropic_url,
            "api_key": "sk-ant-upstream",
            "tier": "large",
            "price": {"input_per_mtok": float(BIG_PRICE[0]), "output_per_mtok": float(BIG_PRICE[1])},
        },
    ]
    routes = {
        "leave-hold": _route("slow-small", min_confidence=0.6, cascade_hold_tokens=HOLD),
        "leave-escalated": _route("unsure", "slow-big", min_confidence=0.6),
        "leave-next": _route("unsure", min_confidence=0.6),
        "leave-cached": _route("unsure", "cached-big", min_confidence=0.6),
        "leave-failed": _route("long-unsure", "hang-big", min_confidence=0.6, cascade_hold_tokens=HOLD),
        "leave-cut": _route("slow-unsure", "slow-big", min_confidence=0.6, cascade_hold_tokens=HOLD),
    }
    return parse_config({"models": models, "routes": routes}, env={})


@pytest.fixture(scope="module")
def leaving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Leaving]:
    settings = cascade_settings(tmp_path_factory.mktemp("cascade-leave"))
    db_url = settings.database_url
    small, big, unsure = SlowUpstream(), SlowUpstream(), SlowUpstream(logprob=math.log(0.3))
    with (
        ServerThread(openai_upstream.create_app()) as oa,
        ServerThread(anthropic_upstream.create_app()) as an,
        ServerThread(small) as sm,
        ServerThread(big) as bg,
        ServerThread(unsure) as un,
    ):
        app = create_app(settings, _config(oa.url, sm.url, bg.url, an.url, un.url))
        with ServerThread(app) as gw:
            yield Leaving(gw.url, db_url, app, small, big, unsure)


@pytest.fixture
def key(leaving: Leaving) -> tuple[str, str]:
    leaving.slow_small.reset()
    leaving.slow_big.reset()
    leaving.slow_unsure.reset()
    leaving.slow_big.head_s = 0.0
    return asyncio.run(_key(leaving.db_url))


def _body(route: str, stream: bool) -> dict[str, Any]:
    return {"model": route, "messages": HELLO, "stream": stream}


def _still_serving(leaving: Leaving, secret: str) -> None:
    headers = {"authorization": f"Bearer {secret}"}
    resp = httpx.post(
        leaving.url + "/v1/chat/completions", json=_body("leave-next", False), headers=headers, timeout=10
    )
    assert resp.status_code == 200, resp.text


def _settled(leaving: Leaving, key_id: str, row: RequestLog) -> None:
    """The budget counts the record's cost, nothing is left held, no close is left running."""
    assert wait_for(lambda: leaving.spent(key_id)[0] == row.cost_usd), (leaving.spent(key_id), row.cost_usd)
    assert leaving.spent(key_id)[1] == 0
    assert wait_for(lambda: leaving.background == 0)


def test_a_client_that_leaves_during_the_hold(leaving: Leaving, key: tuple[str, str]) -> None:
    secret, key_id = key
    headers = {"authorization": f"Bearer {secret}"}
    # Gone after about 6 of the HOLD tokens (50 ms apart): before the gateway answered anything.
    timeout = httpx.Timeout(5.0, read=0.3)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            leaving.url + "/v1/chat/completions",
            json=_body("leave-hold", True),
            headers=headers,
            timeout=timeout,
        )
    assert wait_for(leaving.slow_small.disconnected.is_set), "the held stream's upstream was never hung up on"
    assert leaving.slow_small.sent < HOLD
    row = _one_record(leaving, key_id)
    assert row.status == 499 and row.error_type == "client_disconnected" and row.deployment == "slow-small"
    assert row.escalated is False and row.tokens_estimated is True
    assert 0 < row.completion_tokens < HOLD
    assert row.cost_usd == cost(row.prompt_tokens, row.completion_tokens, SMALL_PRICE)
    _settled(leaving, key_id, row)
    _still_serving(leaving, secret)


def test_a_client_that_leaves_while_the_escalated_stream_is_relayed(
    leaving: Leaving, key: tuple[str, str]
) -> None:
    secret, key_id = key
    headers = {"authorization": f"Bearer {secret}"}
    before = leaving.counters()
    with (
        httpx.Client(timeout=10.0) as http,
        http.stream(
            "POST", leaving.url + "/v1/chat/completions", json=_body("leave-escalated", True), headers=headers
        ) as resp,
    ):
        assert resp.status_code == 200
        assert "cascade=escalated" in resp.headers["x-switchyard-route"]
        request_id = resp.headers["x-switchyard-request-id"]
        seen = 0
        for line in resp.iter_lines():
            if '"content":"t' in line:
                seen += 1
                if seen == 2:
                    break
    assert wait_for(leaving.slow_big.disconnected.is_set), "the escalated stream was never hung up on"
    assert leaving.slow_big.sent < leaving.slow_big.chunks
    row = _one_record(leaving, key_id)
    assert row.request_id == request_id
    assert row.status == 499 and row.error_type == "client_disconnected" and row.deployment == "slow-big"
    assert row.escalated is True and row.wasted_cost_usd == FIRST
    # Both calls' tokens: the first answer's 4 + 6, and the escalated prompt and what it streamed.
    big_prompt, big_out = row.prompt_tokens - 4, row.completion_tokens - 6
    assert big_prompt > 0 and big_out >= 2
    assert row.cost_usd == FIRST + cost(big_prompt, big_out, BIG_PRICE)
    _settled(leaving, key_id, row)
    # /metrics counts what the record bills: both calls' tokens as well as their cost.
    after = leaving.counters()
    grew = {k: after[k] - before.get(k, Decimal(0)) for k in after}
    assert grew == {"prompt": row.prompt_tokens, "completion": row.completion_tokens, "usd": row.cost_usd}
    _still_serving(leaving, secret)


def test_a_client_that_leaves_while_the_escalated_call_is_awaited(
    leaving: Leaving, key: tuple[str, str]
) -> None:
    secret, key_id = key
    headers = {"authorization": f"Bearer {secret}"}
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            leaving.url + "/v1/chat/completions",
            json=_body("leave-escalated", False),
            headers=headers,
            timeout=httpx.Timeout(5.0, read=1.0),
        )
    assert leaving.slow_big.started.is_set()
    assert wait_for(leaving.slow_big.disconnected.is_set), "the escalated call was never hung up on"
    assert time.monotonic() - started < leaving.slow_big.hold_s
    row = _one_record(leaving, key_id)
    assert row.status == 499 and row.error_type == "client_disconnected"
    # The first answer was paid for; the escalated call never answered.
    assert row.cost_usd == FIRST and (row.prompt_tokens, row.completion_tokens) == (4, 6)
    _settled(leaving, key_id, row)
    _still_serving(leaving, secret)


def _one_record(leaving: Leaving, key_id: str) -> RequestLog:
    """The key's one record (a second, were one written, would have landed within the wait)."""
    wait_for(lambda: len(leaving.records(key_id)) > 0, timeout=5.0)
    time.sleep(0.3)
    rows = leaving.records(key_id)
    assert len(rows) == 1, [(r.request_id, r.status) for r in rows]
    return rows[0]


def test_a_client_that_leaves_before_the_escalated_stream_begins(
    leaving: Leaving, key: tuple[str, str]
) -> None:
    secret, key_id = key
    headers = {"authorization": f"Bearer {secret}"}
    leaving.slow_big.head_s = 10.0  # the large tier is slow to its first token
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            leaving.url + "/v1/chat/completions",
            json=_body("leave-escalated", True),
            headers=headers,
            timeout=httpx.Timeout(5.0, read=1.0),
        )
    assert leaving.slow_big.started.is_set()
    assert wait_for(leaving.slow_big.disconnected.is_set), "the escalated stream was never hung up on"
    row = _one_record(leaving, key_id)
    assert row.status == 499 and row.error_type == "client_disconnected" and row.deployment == "unsure"
    # The first answer came whole, with its usage; the escalated call sent nothing.
    assert row.cost_usd == FIRST and (row.prompt_tokens, row.completion_tokens) == (4, 6)
    _settled(leaving, key_id, row)
    _still_serving(leaving, secret)


def test_an_escalated_answer_s_cache_tokens_are_recorded(leaving: Leaving, key: tuple[str, str]) -> None:
    secret, key_id = key
    headers = {"authorization": f"Bearer {secret}"}
    before = leaving.counters()
    resp = httpx.post(
        leaving.url + "/v1/chat/completions", json=_body("leave-cached", False), headers=headers, timeout=10
    )
    assert resp.status_code == 200 and "cascade=escalated" in resp.headers["x-switchyard-route"]
    row = _one_record(leaving, key_id)
    assert row.escalated is True and row.deployment == "cached-big"
    # The record keeps the parts of the prompt that its cost prices apart, whichever call they were in.
    assert (row.cached_tokens, row.cache_write_5m_tokens) == (10, 5)
    # Priced as Anthropic does when no cache prices are set: reads 0.1x the input, 5-minute writes 1.25x.
    big_prompt, big_out = row.prompt_tokens - 4, row.completion_tokens - 6
    big = (
        (big_prompt - 15) * BIG_PRICE[0] + 10 * BIG_PRICE[0] / 10 + 5 * BIG_PRICE[0] * Decimal("1.25")
    ) / MTOK
    assert row.wasted_cost_usd == FIRST and row.cost_usd == FIRST + big + cost(0, big_out, BIG_PRICE)
    after = leaving.counters()
    assert after["cache_read"] - before.get("cache_read", 0) == 10
    assert after["cache_write"] - before.get("cache_write", 0) == 5


def test_the_first_stream_is_billed_for_what_it_sent_while_the_escalation_was_awaited(
    leaving: Leaving, key: tuple[str, str]
) -> None:
    secret, key_id = key
    headers = {"authorization": f"Bearer {secret}"}
    leaving.slow_big.head_s = 1.0  # the first stream goes on meanwhile: about 20 tokens more
    with (
        httpx.Client(timeout=10.0) as http,
        http.stream(
            "POST", leaving.url + "/v1/chat/completions", json=_body("leave-cut", True), headers=headers
        ) as resp,
    ):
        assert "cascade=escalated; conf=0.30<0.60" in resp.headers["x-switchyard-route"]
        for line in resp.iter_lines():
            if '"content":"t' in line:
                break
    assert wait_for(leaving.slow_unsure.disconnected.is_set) and wait_for(
        leaving.slow_big.disconnected.is_set
    )
    sent = leaving.slow_unsure.sent
    assert sent > HOLD + 10
    row = _one_record(leaving, key_id)
    assert row.status == 499 and row.escalated is True and row.tokens_estimated is True
    # Neither upstream gave usage: each prompt is the gateway's count, and the first call's answer is
    # what it sent until it was hung up on (but the chunks in flight then: one, two on a busy machine).
    prompt = row.prompt_tokens // 2
    first_out = (row.wasted_cost_usd * MTOK - prompt * SMALL_PRICE[0]) / SMALL_PRICE[1]
    assert sent - 2 <= first_out <= sent, (first_out, sent)
    assert row.cost_usd == row.wasted_cost_usd + cost(
        prompt, row.completion_tokens - int(first_out), BIG_PRICE
    )
    _settled(leaving, key_id, row)
    _still_serving(leaving, secret)


def test_a_stream_whose_escalation_fails_keeps_all_of_the_first_answer(
    leaving: Leaving, key: tuple[str, str]
) -> None:
    secret, key_id = key
    headers = {"authorization": f"Bearer {secret}"}
    with (
        httpx.Client(timeout=10.0) as http,
        http.stream(
            "POST", leaving.url + "/v1/chat/completions", json=_body("leave-failed", True), headers=headers
        ) as resp,
    ):
        assert "cascade=kept; conf=0.30<0.60; escalation_failed=504" in resp.headers["x-switchyard-route"]
        text = "".join(
            orjson.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            for line in resp.iter_lines()
            if line.startswith("data: {") and '"choices":[{' in line
        )
    # What was read on while the escalation was awaited (about 30 tokens) comes in order, then the rest.
    assert text == " ".join(f"tok{i}" for i in range(200))
    row = _one_record(leaving, key_id)
    assert row.status == 200 and row.escalated is False and row.deployment == "long-unsure"
    assert (row.prompt_tokens, row.completion_tokens) == (4, 200)
    assert row.cost_usd == cost(4, 200, SMALL_PRICE)
    _settled(leaving, key_id, row)
