"""A gateway with cascade routes (gateway.pipeline.cascade) in front of the fake OpenAI and Anthropic
upstreams, on SQLite, served on 127.0.0.1 for the module's tests.

Every route starts at its small candidate (`quality: 0`: the cheapest tier that qualifies) and
escalates to `big` (large, the fake's ordinary answer "Hello from openai!" with confident logprobs).
The small candidates are the fake's `conf-<p>` models (tests.fakes.confidence): 6 tokens whose mean
token probability is p.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import select

from gateway.app import create_app
from gateway.config import parse_config
from gateway.db.engine import make_engine, session_factory
from gateway.db.models import RequestLog
from gateway.settings import Settings
from tests.fakes import anthropic_upstream, openai_upstream
from tests.fakes.server import ServerThread

MASTER_KEY = "sk-master-cascade"
MTOK = Decimal(1_000_000)
SMALL_PRICE = (Decimal(1), Decimal(2))
BIG_PRICE = (Decimal(10), Decimal(20))
HOLD = 16
THRESHOLD = 0.6
FINAL = "Hello from openai!"


def _oa(base: str, name: str, model: str, tier: str, price: tuple[Decimal, Decimal]) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai_compatible",
        "model": model,
        "api_base": base,
        "api_key": "sk-upstream",
        "tier": tier,
        "timeout": 10.0,
        "price": {"input_per_mtok": float(price[0]), "output_per_mtok": float(price[1])},
    }


def _route(small: str, top: str = "big", **knobs: Any) -> dict[str, Any]:
    return {"candidates": [small, top], "quality": 0.0, "mode": "cascade", **knobs}


def cascade_config(openai_url: str, anthropic_url: str) -> Any:
    base = openai_url + "/v1"
    smalls = {
        "c41": "conf-0.41",
        "c83": "conf-0.83",
        "c60": "conf-0.6",
        "c59": "conf-0.59",
        "prompted": "conf-prompt",
        "long-sure": "conf-0.9-words-200-ms-10",
        "long-unsure": "conf-0.3-words-200-ms-10",
    }
    models = [_oa(base, name, model, "small", SMALL_PRICE) for name, model in smalls.items()]
    models += [
        _oa(base, "big", "gpt-4o", "large", BIG_PRICE),
        _oa(base, "broken-big", "fail-500", "large", BIG_PRICE),
        {
            "name": "claude-small",
            "provider": "anthropic",
            "model": "claude-upstream",
            "api_base": anthropic_url,
            "api_key": "sk-ant-upstream",
            "tier": "small",
            "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
        },
    ]
    routes = {name: _route(name, min_confidence=THRESHOLD) for name in ("c41", "c83", "c60", "c59")}
    routes["long-sure"] = _route("long-sure", min_confidence=THRESHOLD, cascade_hold_tokens=HOLD)
    routes["long-unsure"] = _route("long-unsure", min_confidence=THRESHOLD, cascade_hold_tokens=HOLD)
    routes["fraction"] = _route("prompted", escalate_fraction=0.3)
    routes["no-logprobs"] = _route("claude-small", min_confidence=THRESHOLD)
    routes["broken-top"] = _route("c41", "broken-big", min_confidence=THRESHOLD)
    routes["one-tier"] = _route("c41", "c59", min_confidence=THRESHOLD)
    return parse_config({"models": models, "routes": {f"cascade-{k}": v for k, v in routes.items()}}, env={})


@dataclass
class CascadeGateway:
    url: str
    db_url: str
    openai_fake: ServerThread

    @property
    def upstream_calls(self) -> list[Any]:
        return [r for r in self.openai_fake.app.state.requests if r.path == "/v1/chat/completions"]

    def record(self, request_id: str, within_s: float = 10.0) -> RequestLog:
        return asyncio.run(_record(self.db_url, RequestLog.request_id == request_id, within_s))

    def record_of(self, route: str, status: int, within_s: float = 10.0) -> RequestLog:
        """The (one) record of a request to `route` that ended with `status`."""
        where = (RequestLog.requested_model == route) & (RequestLog.status == status)
        return asyncio.run(_record(self.db_url, where, within_s))


async def _record(url: str, where: Any, within_s: float) -> RequestLog:
    engine = make_engine(url)
    deadline = time.monotonic() + within_s
    try:
        while True:
            async with session_factory(engine)() as s:
                row = (await s.execute(select(RequestLog).where(where))).scalar_one_or_none()
            if row is not None or time.monotonic() > deadline:
                assert row is not None, f"no record where {where}"
                return row
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


def cascade_settings(state: Path) -> Settings:
    """A gateway on SQLite in `state`, flushing records every 0.1 s, without retries."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{state / 'switchyard.db'}",
        spool_dir=state / "spool",
        master_key=MASTER_KEY,
        spend_flush_interval_s=0.1,
        retries=0,
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CascadeGateway]:
    state = tmp_path_factory.mktemp("cascade")
    settings = cascade_settings(state)
    db_url = settings.database_url
    with (
        ServerThread(openai_upstream.create_app()) as oa,
        ServerThread(anthropic_upstream.create_app()) as an,
        ServerThread(create_app(settings, cascade_config(oa.url, an.url))) as gw,
    ):
        yield CascadeGateway(gw.url, db_url, oa)


@pytest.fixture(scope="module")
def client(gateway: CascadeGateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20.0) as c:
        yield c


def cost(prompt: int, completion: int, price: tuple[Decimal, Decimal]) -> Decimal:
    return (prompt * price[0] + completion * price[1]) / MTOK
