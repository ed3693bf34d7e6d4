"""A gateway in process (`create_app`, on the session's PostgreSQL) in front of the fake judge
upstream (tests.fakes.judge_upstream), for the routing-quality tests.

Deployments: cheap (small), strong (large), judge (medium), all on the fake; prices below make each
call's cost exact (the fake's usage is fixed). Routes: `cheap` candidates [cheap, strong] at quality 0
(the small tier serves), shadowed at the rate each test's route names.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
from sqlalchemy import select

from gateway.app import create_app
from gateway.config import parse_config
from gateway.db.engine import make_engine, session_factory
from gateway.settings import Settings
from tests.fakes.judge_upstream import COMPLETION_TOKENS, PROMPT_TOKENS
from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import MASTER_KEY
from tests.integration.harness import deployment

MTOK = Decimal(1_000_000)
PRICES = {"cheap": (1, 2), "strong": (10, 20), "judge": (3, 6)}
MODELS = {"cheap": "cheap-model", "strong": "strong-model", "judge": "judge-model"}
TIERS = {"cheap": "small", "strong": "large", "judge": "medium"}


def call_cost(name: str) -> Decimal:
    price_in, price_out = PRICES[name]
    return (PROMPT_TOKENS * price_in + COMPLETION_TOKENS * price_out) / MTOK


# One shadowed request: the strongest candidate's answer and the judge twice.
SHADOW_COST = call_cost("strong") + 2 * call_cost("judge")


def route(rate: float) -> dict[str, Any]:
    return {"candidates": ["cheap", "strong"], "quality": 0.0, "shadow": {"rate": rate, "judge": "judge"}}


@contextmanager
def quality_gateway(
    pg_url: str, upstream_url: str, spool: Path, routes: dict[str, Any], **settings: Any
) -> Iterator[str]:
    models = [
        {**deployment(name, upstream_url, *PRICES[name]), "model": MODELS[name], "tier": TIERS[name]}
        for name in PRICES
    ]
    config = parse_config({"models": models, "routes": routes}, {})
    values = {
        "database_url": pg_url,
        "master_key": MASTER_KEY,
        "spool_dir": spool,
        "spend_flush_interval_s": 0.05,
        "local_model": False,
        **settings,
    }
    with ServerThread(create_app(Settings(_env_file=None, **values), config)) as srv:  # type: ignore[call-arg]
        yield srv.url


async def ask(url: str, key: str, model: str, text: str = "Say hello") -> str:
    """One chat call through the openai SDK; its request id."""
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=10.0) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": text}]
        )
    return raw.headers["x-switchyard-request-id"]


async def rows(url: str, table: Any, *where: Any) -> list[Any]:
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session:
            return list((await session.execute(select(table).where(*where))).scalars())
    finally:
        await engine.dispose()


async def wait_for(url: str, table: Any, want: int, *where: Any, within_s: float = 20.0) -> list[Any]:
    """Poll until `table` has `want` rows matching `where` (or time is up); the last read."""
    deadline = time.monotonic() + within_s
    while True:
        found = await rows(url, table, *where)
        if len(found) >= want or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)
