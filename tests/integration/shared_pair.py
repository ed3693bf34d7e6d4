"""The two gateways that share one Redis and one PostgreSQL (the `pair` fixture in conftest).

Used by test_shared_limits (60 RPM and a $1.00 team budget over both) and test_shared_no_key_leak.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from tests.integration.gateway_proc import GatewayProcess
from tests.integration.harness import COMPLETION_TOKENS, Call, expected_cost

# $0.01 a token either way: a 5-word prompt with max_tokens=3 costs exactly $0.08 at the fake.
BUDGET_PRICE = Decimal(10_000)
BUDGET_PROMPT = "one two three four five"
BUDGET_COST = expected_cost(5, COMPLETION_TOKENS, BUDGET_PRICE, BUDGET_PRICE)


@dataclass
class Pair:
    gateways: list[GatewayProcess]
    workdir: Path

    def url(self, i: int) -> str:
        return self.gateways[i % 2].url


async def fallback_acquires(pair: Pair) -> list[int]:
    """Admissions each gateway made from its per-process limiter (Redis too slow or down)."""
    counts = []
    async with httpx.AsyncClient(timeout=10.0) as c:
        for g in pair.gateways:
            text = (await c.get(g.url + "/metrics")).text
            found = re.search(r"^switchyard_limiter_fallback_acquires_total (\d+)$", text, re.M)
            assert found, "the limiter reports its fallbacks in /metrics"
            counts.append(int(found.group(1)))
    return counts


def client(concurrency: int = 50) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(timeout=30.0, limits=limits)


def error_of(call: Call) -> dict[str, Any]:
    assert isinstance(call.body, dict) and isinstance(call.body.get("error"), dict), call.body
    return call.body["error"]
