"""The acceptance tests: two OS processes, each its own event loop and connection, one Redis or one
Redis Cluster (the same assertions on both)."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Store:
    url: str
    prefix: str  # as the limiter writes it (a hash tag on a cluster)
    cluster: bool

    def client(self) -> redis.Redis | redis.RedisCluster:
        return redis.RedisCluster.from_url(self.url) if self.cluster else redis.Redis.from_url(self.url)


@pytest.fixture(params=["single", "cluster"])
def store(request: pytest.FixtureRequest, redis_url: str, prefix: str) -> Store:
    if request.param == "single":
        return Store(redis_url, prefix, False)
    return Store(request.getfixturevalue("redis_cluster_url"), prefix, True)


async def _run_pair(mode: str, store: Store, per_process: int) -> list[dict]:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.gateway.limits._worker",
            mode,
            store.url,
            store.prefix,
            str(per_process),
            str(seed),
            *(["cluster"] if store.cluster else []),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for seed in (1, 2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            line = await asyncio.wait_for(p.stdout.readline(), 30)
            assert line.strip() == b"ready", line
        outs = []
        results = await asyncio.wait_for(asyncio.gather(*(p.communicate(b"go\n") for p in procs)), 30)
        for p, (stdout, stderr) in zip(procs, results, strict=True):
            assert p.returncode == 0, stderr.decode()
            outs.append(json.loads(stdout.decode().strip().splitlines()[-1]))
        return outs
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()


def _keys(store: Store) -> str:
    return "{" + store.prefix.rstrip(":") + "}:" if store.cluster else store.prefix


async def test_rpm_60_across_two_processes(store: Store) -> None:
    outs = await _run_pair("rpm", store, 100)
    allowed = [o["allowed"] for o in outs]
    assert sum(allowed) == 60, allowed
    prefix = _keys(store)
    client = store.client()
    assert client.zcard(f"{prefix}w:key:k60") == 60
    assert int(client.hget(f"{prefix}t:key:k60", "_sum")) == 600
    client.close()


async def test_budget_1usd_across_two_processes(store: Store) -> None:
    outs = await _run_pair("budget", store, 25)
    charged = [Decimal(c) for o in outs for c in o["charged"]]
    total = sum(charged, Decimal(0))
    # Reservations hold the worst case, so the ceiling holds exactly, not just within one request.
    assert total <= Decimal("1.00") + Decimal("0.10")
    assert total <= Decimal("1.00")
    assert total > Decimal("0.90"), total  # what is left is less than one worst case
    assert all(o["charged"] for o in outs), "both processes were admitted"
    prefix = _keys(store)
    client = store.client()
    h = client.hgetall(f"{prefix}b:team:b1:total")
    assert Decimal(int(h[b"spent"])) / 10**9 == total
    assert int(h[b"held"]) == 0
    assert client.zcard(f"{prefix}r:team:b1:total") == 0
    client.close()
