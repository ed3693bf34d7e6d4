"""Redis unreachable: fail-open serves from the process's own limiter, fail-closed refuses (503)."""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from gateway.limits import (
    BudgetSpec,
    FailoverLimiter,
    LimitSpec,
    MemoryLimiter,
    RedisLimiter,
    create_limiter,
    denial_error,
)
from gateway.limits.model import Admission, Ticket
from tests.fakes.redis_server import fake_redis
from tests.fakes.server import closed_port

ZERO = Decimal(0)
LIMITS = [LimitSpec("key:k", rpm=3)]


@pytest.fixture
def dead_url() -> str:
    """A port nothing listens on: connections are refused at once."""
    return f"redis://127.0.0.1:{closed_port()}/0"


async def test_no_url_is_in_process() -> None:
    lim = await create_limiter(None, "open")
    assert isinstance(lim, MemoryLimiter)
    with pytest.raises(ValueError):
        await create_limiter(None, "sideways")


@pytest.mark.parametrize("cluster", [False, True], ids=["single", "cluster"])
async def test_fail_open_uses_local_limits_and_says_so_once(
    dead_url: str, cluster: bool, caplog: pytest.LogCaptureFixture
) -> None:
    lim = await create_limiter(dead_url, "open", cluster=cluster)
    assert isinstance(lim, FailoverLimiter)
    caplog.clear()
    t0 = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="switchyard.limits"):
        res = [await lim.acquire(LIMITS, [], 0, ZERO, f"r{i}") for i in range(50)]
    elapsed = time.perf_counter() - t0
    # Still limited, per process, while Redis is away.
    assert [a.allowed for a in res[:4]] == [True, True, True, False]
    assert res[3].reason == "rpm"
    assert lim.outages == 1 and lim.fallback_acquires == 50 and lim.degraded
    warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert "switchyard_limiter_degraded 1" in lim.metrics_lines()
    assert elapsed < 1.0, f"a dead Redis stalled 50 requests for {elapsed:.2f}s"
    # Tickets from the fallback settle into the fallback.
    assert res[0].ticket is not None and res[0].ticket.origin == "memory"
    await lim.settle(res[0].ticket, 10, ZERO)
    assert lim.settle_errors == 0
    await lim.aclose()


@pytest.mark.parametrize("cluster", [False, True], ids=["single", "cluster"])
async def test_fail_closed_refuses_with_503(dead_url: str, cluster: bool) -> None:
    lim = await create_limiter(dead_url, "closed", cluster=cluster)
    t0 = time.perf_counter()
    adm = await lim.acquire(LIMITS, [], 0, ZERO, "r")
    assert time.perf_counter() - t0 < 0.5
    assert not adm.allowed and adm.reason == "unavailable"
    d = denial_error(adm)
    assert d.status == 503 and "retry-after" in d.headers
    assert isinstance(lim, FailoverLimiter) and lim.unavailable_denials == 1
    await lim.aclose()


class _Flaky(MemoryLimiter):
    """A primary that can be switched off, counting how often it is tried."""

    origin = "redis"

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    async def acquire(self, *args: object, **kwargs: object) -> Admission:
        self.calls += 1
        if self.down:
            raise RedisConnectionError("connection refused")
        return await super().acquire(*args, **kwargs)  # type: ignore[arg-type]

    async def settle(self, ticket: Ticket, actual_tokens: int, actual_cost_usd: Decimal | None) -> None:
        if self.down:
            raise RedisConnectionError("connection refused")
        await super().settle(ticket, actual_tokens, actual_cost_usd)


async def test_outage_probing_and_recovery(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    primary = _Flaky()
    lim = FailoverLimiter(primary, MemoryLimiter(), "open", probe_interval_s=1.0, clock=lambda: now[0])
    ok = await lim.acquire(LIMITS, [], 0, ZERO, "a")
    assert ok.ticket is not None and ok.ticket.origin == "redis"
    primary.down = True
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="switchyard.limits"):
        for _ in range(10):
            assert (
                await lim.acquire([], [BudgetSpec("team:t", Decimal(1), "total", "total")], 0, ZERO, "b")
            ).allowed
        # Within the probe interval Redis is not tried again.
        assert primary.calls == 2
        await lim.settle(ok.ticket, 0, ZERO)  # lost, counted, not raised
        assert lim.settle_errors == 1
        now[0] = 1.5
        primary.down = False
        back = await lim.acquire(LIMITS, [], 0, ZERO, "c")
    assert back.ticket is not None and back.ticket.origin == "redis"
    assert not lim.degraded and lim.outages == 1
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in msgs) == 1 and sum("is back" in m for m in msgs) == 1


async def test_noscript_reloads_once(redis_url: str, prefix: str) -> None:
    lim = RedisLimiter.from_url(redis_url, prefix=prefix)
    real = lim.client.evalsha
    loads: list[str] = []
    raised = [False]

    async def evalsha(*args: object) -> object:
        if not raised[0]:
            raised[0] = True
            raise NoScriptError("NOSCRIPT No matching script")
        return await real(*args)

    real_load = lim.client.script_load

    async def script_load(script: str) -> str:
        loads.append(script)
        return await real_load(script)

    lim.client.evalsha = evalsha  # type: ignore[method-assign]
    lim.client.script_load = script_load  # type: ignore[method-assign]
    assert (await lim.acquire(LIMITS, [], 0, ZERO, "r")).allowed
    assert len(loads) == 1
    assert (await lim.acquire(LIMITS, [], 0, ZERO, "r")).allowed
    assert len(loads) == 1
    await lim.aclose()


async def test_fail_open_remembers_the_shared_spend() -> None:
    """A team out of budget in Redis stays out when Redis goes away and this process falls back."""
    primary = _Flaky()
    lim = FailoverLimiter(primary, MemoryLimiter(), "open")
    spec = [BudgetSpec("team:t", Decimal("1.00"), "monthly", "2030-01")]
    adm = await lim.acquire([], spec, 0, Decimal("0.95"), "a")
    assert adm.ticket is not None
    await lim.settle(adm.ticket, 0, Decimal("0.95"))
    assert (await lim.acquire([], spec, 0, Decimal("0.01"), "b")).allowed  # sees spent = 0.95
    primary.down = True
    denied = await lim.acquire([], spec, 0, Decimal("0.10"), "c")
    assert lim.degraded and not denied.allowed and denied.reason == "budget"


async def test_settle_nowait_routes_and_drains() -> None:
    primary = _Flaky()
    lim = FailoverLimiter(primary, MemoryLimiter(), "open")
    spec = [BudgetSpec("team:t", Decimal("1.00"), "total", "total")]
    a = await lim.acquire([], spec, 0, Decimal("0.1"), "a")
    primary.down = True
    b = await lim.acquire([], spec, 0, Decimal("0.1"), "b")
    assert a.ticket is not None and b.ticket is not None and b.ticket.origin == "memory"
    lim.settle_nowait(b.ticket, 0, Decimal("0.02"))  # in process: settled on the spot
    assert await lim.fallback.spent("team:t", "total") == Decimal("0.02")  # type: ignore[union-attr]
    primary.down = False
    lim.settle_nowait(a.ticket, 0, Decimal("0.03"))
    await lim.aclose()  # drains the background settlement
    assert await primary.spent("team:t", "total") == Decimal("0.03")


async def test_background_settlement_failure_is_counted_and_marks_redis_down() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await reader.read(4096):
            writer.write(b"-ERR READONLY You can't write against a read only replica.\r\n")
        writer.close()

    async with fake_redis(refuse) as url:
        lim = FailoverLimiter(RedisLimiter.from_url(url), MemoryLimiter(), "open")
        ticket = Ticket("m.1", "r", 10, 1000, ("key:k",), (), origin="redis")
        lim.settle_nowait(ticket, 4, Decimal("0.01"))
        await lim.aclose()
    assert lim.settle_errors == 1 and lim.degraded


async def test_background_settlement_reloads_lost_scripts(redis_url: str, prefix: str) -> None:
    lim = RedisLimiter.from_url(redis_url, prefix=prefix)
    await lim.load_scripts()
    adm = await lim.acquire([], [BudgetSpec("team:t", Decimal(1), "total", "total")], 0, Decimal("0.5"), "r")
    assert adm.ticket is not None
    await lim.client.execute("SCRIPT", "FLUSH")  # Redis restarted without its scripts
    lim.settle_nowait(adm.ticket, 0, Decimal("0.2"))
    await lim.aclose()
    check = RedisLimiter.from_url(redis_url, prefix=prefix)
    assert await check.spent("team:t", "total") == Decimal("0.2")
    assert await check.held("team:t", "total") == 0
    await check.aclose()
