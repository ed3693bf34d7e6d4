"""Databases, keys, records and chat calls for the integration tests.

PG_*             where the shared PostgreSQL server is (the suite's database names: tests/stores.py)
CREATED_KEYS     every virtual key this session made (scanned by test_shared_no_key_leak)
deployment       one model entry of a gateway config; write_config writes the file
new_key          a team and a virtual key made through gateway.admin.service on the database
log_rows, ...    what the gateway recorded for one key (request_log, daily_spend, spill files)
chat             one raw-HTTP chat call, streamed or not, with what came back (a Call)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import yaml
from sqlalchemy import select

from gateway.admin import service
from gateway.admin.schemas import KeyCreate, TeamCreate
from gateway.db.engine import make_engine, session_factory
from gateway.db.models import DailySpend, HourlySpend, RequestLog
from tests.fakes import openai_upstream

PG_HOST, PG_PORT = "127.0.0.1", 5432
MTOK = Decimal(1_000_000)
COMPLETION_TOKENS = openai_upstream.COMPLETION_TOKENS
ACTOR = "integration-test"

# Every virtual key this session made, with the database it lives in: the leak scan
# (test_shared_no_key_leak) looks for all of them.
CREATED_KEYS: list[tuple[str, str]] = []


def pg_url_for(name: str, host: str = PG_HOST, port: int = PG_PORT) -> str:
    return f"postgresql+asyncpg://postgres@{host}:{port}/{name}"


# --------------------------------------------------------------------------- gateway configs


def deployment(name: str, upstream_url: str, price_in: float, price_out: float) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai_compatible",
        "model": "gpt-4o-mini",
        "api_base": upstream_url + "/v1",
        "api_key": "sk-upstream-integration",
        "timeout": 10.0,
        "connect_timeout": 2.0,
        "price": {"input_per_mtok": price_in, "output_per_mtok": price_out},
    }


def write_config(path: Path, models: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"models": models}))
    return path


def expected_cost(prompt: int, completion: int, price_in: Decimal, price_out: Decimal) -> Decimal:
    return (prompt * price_in + completion * price_out) / MTOK


# --------------------------------------------------------------------------- teams and keys


@dataclass(frozen=True)
class Credentials:
    team_id: str
    key_id: str
    key: str  # plaintext, as create_key returned it once


async def new_key(
    url: str, *, team: dict[str, Any] | None = None, key: dict[str, Any] | None = None
) -> Credentials:
    """A team and one virtual key, made with the admin service straight on the database."""
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session:
            t = await service.create_team(
                session, TeamCreate(name=f"it-{uuid.uuid4().hex[:10]}", **(team or {})), actor=ACTOR
            )
            made = await service.create_key(session, KeyCreate(team_id=t.id, **(key or {})), actor=ACTOR)
    finally:
        await engine.dispose()
    CREATED_KEYS.append((url, made.key))
    return Credentials(t.id, made.row.id, made.key)


Row = TypeVar("Row", RequestLog, DailySpend, HourlySpend)


async def _key_rows(url: str, table: type[Row], key_id: str) -> list[Row]:
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session:
            return list((await session.execute(select(table).where(table.key_id == key_id))).scalars())
    finally:
        await engine.dispose()


async def log_rows(url: str, key_id: str) -> list[RequestLog]:
    return await _key_rows(url, RequestLog, key_id)


async def daily_rows(url: str, key_id: str) -> list[DailySpend]:
    return await _key_rows(url, DailySpend, key_id)


async def hourly_rows(url: str, key_id: str) -> list[HourlySpend]:
    return await _key_rows(url, HourlySpend, key_id)


async def wait_rows(url: str, key_id: str, want: int, within_s: float = 30.0) -> list[RequestLog]:
    """Poll until the key has `want` rows (or `within_s` passed); returns the last read."""
    deadline = time.monotonic() + within_s
    while True:
        rows = await log_rows(url, key_id)
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.2)


def assert_daily_matches(rows: list[RequestLog], daily: list[DailySpend]) -> None:
    """daily_spend is the exact aggregate of the log rows: nothing counted twice or missed."""
    assert sum(d.requests for d in daily) == len(rows)
    assert sum(d.prompt_tokens for d in daily) == sum(r.prompt_tokens for r in rows)
    assert sum(d.completion_tokens for d in daily) == sum(r.completion_tokens for r in rows)
    assert sum((d.cost_usd for d in daily), Decimal(0)) == sum(
        (r.cost_usd or Decimal(0) for r in rows), Decimal(0)
    )
    assert sum(d.errors for d in daily) == sum(1 for r in rows if r.status >= 400 or r.error_type)


def assert_hourly_matches(rows: list[RequestLog], hourly: list[HourlySpend]) -> None:
    """hourly_spend is the exact aggregate of the log rows too, savings included."""
    zero = Decimal(0)
    assert sum(h.requests for h in hourly) == len(rows)
    assert sum(h.prompt_tokens for h in hourly) == sum(r.prompt_tokens for r in rows)
    assert sum(h.completion_tokens for h in hourly) == sum(r.completion_tokens for r in rows)
    assert sum((h.cost_usd for h in hourly), zero) == sum((r.cost_usd or zero for r in rows), zero)
    priced = [r for r in rows if r.cost_usd is not None and r.baseline_cost_usd is not None]
    assert sum((h.baseline_cost_usd - h.cost_usd for h in hourly), zero) == sum(
        (r.baseline_cost_usd - r.cost_usd for r in priced),  # type: ignore[operator]
        zero,
    )
    assert sum(h.unpriced for h in hourly) == len(rows) - len(priced)
    assert sum(h.requests for h in hourly if h.error_type) == sum(
        1 for r in rows if r.status >= 400 or r.error_type
    )
    ok = [r for r in rows if r.status < 400 and not r.error_type]
    assert sum(sum((h.latency_hist or {}).values()) for h in hourly) == len(ok)
    assert sum(sum((h.ttft_hist or {}).values()) for h in hourly) == sum(r.ttft_ms is not None for r in ok)


def spill_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("spill-*.jsonl*")) if directory.exists() else []


# --------------------------------------------------------------------------- raw chat calls


def words(n: int, tag: str = "w") -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


@dataclass
class Call:
    """What one chat call came to, as the client saw it."""

    status: int | None = None
    request_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    completed: bool = False  # the whole answer arrived (for a stream: through [DONE])
    error: str | None = None  # transport failure

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.completed


async def chat(
    client: httpx.AsyncClient,
    base_url: str,
    key: str,
    *,
    model: str,
    content: str,
    stream: bool = False,
    max_tokens: int | None = None,
) -> Call:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": content}]}
    if stream:
        body["stream"] = True
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    call = Call()
    try:
        async with client.stream(
            "POST",
            base_url + "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {key}"},
        ) as resp:
            call.status = resp.status_code
            call.headers = dict(resp.headers)
            call.request_id = resp.headers.get("x-switchyard-request-id")
            raw = await resp.aread()
        if stream and call.status == 200:
            call.body = raw.decode()
            call.completed = call.body.rstrip().endswith("data: [DONE]")
        else:
            call.body = orjson.loads(raw) if raw else None
            call.completed = True
    except httpx.HTTPError as exc:
        call.error = f"{type(exc).__name__}: {exc}"
    return call
