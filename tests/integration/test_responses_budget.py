"""The Responses door under a budget, as the chat doors are (tests.integration.test_budget_cap): its
`max_output_tokens` is capped at what the budget pays for, and the call is charged and recorded."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

from tests.integration.harness import new_key, wait_rows
from tests.integration.test_budget_cap import CENT, Gateway, affordable, chat_of
from tests.integration.test_budget_cap import gw as gw  # the same gateways, one per limiter


async def test_the_responses_door_caps_max_output_tokens(gw: Gateway, pg_url: str) -> None:
    creds = await new_key(pg_url, key={"budget_usd": Decimal("0.50")})
    marker = f"responses-{gw.limiter}"
    (message,) = chat_of(marker)
    cap = affordable(Decimal("0.50"), [message])
    async with gw.client(creds.key) as client:
        raw = await client.responses.with_raw_response.create(
            model="verbose", input=message["content"], max_output_tokens=1000
        )
        done = raw.parse()
        assert raw.headers["x-switchyard-max-tokens-capped"] == str(cap)
        assert done.output_text == f"max_tokens={cap}"
        assert gw.received(marker)["max_tokens"] == cap
        cost = Decimal(raw.headers["x-switchyard-cost-usd"])
        assert cost == (2 + cap) * CENT <= Decimal("0.50")
        # What is left pays for no answer: refused before it reaches the upstream.
        with pytest.raises(openai.RateLimitError) as refused:
            await client.responses.create(
                model="verbose", input=f"late-{gw.limiter} x", max_output_tokens=1000
            )
    assert isinstance(refused.value.body, dict) and refused.value.body["code"] == "budget_exceeded"
    rows = await wait_rows(pg_url, creds.key_id, 1)
    assert rows[0].cost_usd == cost
