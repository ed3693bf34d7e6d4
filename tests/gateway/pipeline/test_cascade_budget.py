"""A budgeted key's cascade: the escalated call is capped to what the budget still holds once the
first answer is paid for, and when that is too little the first answer is kept (never a 429 for an
answer the client already paid for)."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import openai

from gateway.admin import service
from gateway.admin.schemas import KeyCreate, TeamCreate
from gateway.control import MIN_CAPPED_OUTPUT
from gateway.db.engine import make_engine, session_factory
from gateway.usage import prompt_tokens
from tests.gateway.pipeline.conftest import BIG_PRICE, SMALL_PRICE, CascadeGateway, cost

HELLO = [{"role": "user", "content": "say hello to me"}]


async def _key(url: str, budget: Decimal) -> str:
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as s:
            team = await service.create_team(s, TeamCreate(name=f"cascade-{uuid.uuid4().hex[:8]}"), actor="t")
            made = await service.create_key(s, KeyCreate(team_id=team.id, budget_usd=budget), actor="t")
    finally:
        await engine.dispose()
    return made.key


def _ask(gateway: CascadeGateway, budget: Decimal) -> dict[str, str]:
    key = asyncio.run(_key(gateway.db_url, budget))
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=20.0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="cascade-c41", messages=HELLO, max_tokens=1000
        )
    return dict(raw.headers)


def _least_escalation() -> Decimal:
    """What the budget must still hold for `big` to answer at all: the prompt as the gateway counts
    it and MIN_CAPPED_OUTPUT tokens."""
    prompt = prompt_tokens({"model": "cascade-c41", "messages": HELLO})
    return cost(prompt, MIN_CAPPED_OUTPUT, BIG_PRICE)


def test_an_escalation_the_budget_cannot_pay_for_after_the_first_answer_keeps_it(
    gateway: CascadeGateway,
) -> None:
    first = cost(4, 6, SMALL_PRICE)  # what the fake bills the first answer
    # Enough for the escalation before the first answer, not after it.
    headers = _ask(gateway, _least_escalation() + first / 2)
    assert "cascade=kept; conf=0.41<0.60; escalation_failed=429" in headers["x-switchyard-route"]
    assert headers["x-switchyard-model"] == "c41"
    assert Decimal(headers["x-switchyard-cost-usd"]) == first


def test_an_escalation_within_budget_is_capped_to_what_is_left(gateway: CascadeGateway) -> None:
    first = cost(4, 6, SMALL_PRICE)
    budget = _least_escalation() + first + cost(0, 20, BIG_PRICE)
    headers = _ask(gateway, budget)
    assert "cascade=escalated; conf=0.41<0.60" in headers["x-switchyard-route"]
    assert headers["x-switchyard-model"] == "big"
    # The held budget, less the first answer, pays for the prompt and MIN_CAPPED_OUTPUT + 20 tokens.
    assert int(headers["x-switchyard-max-tokens-capped"]) == MIN_CAPPED_OUTPUT + 20
