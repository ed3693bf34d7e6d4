"""Mutated /v1 bodies over ONE keep-alive connection: every answer is a client error or a success, never a
5xx, and the gateway never drops the connection.

Default CI sends FUZZ_COUNT bodies (under a minute here); `-m slow` sends SLOW_FUZZ_COUNT. Both are
deterministic (fixed seeds), so a failure reproduces with the same command.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.e2e.fuzz.fuzz_harness import AUTH, FuzzGateway
from tests.e2e.fuzz.v1_mutations import bodies, responses_seeds

FUZZ_COUNT = 1000
SLOW_FUZZ_COUNT = 4000
TIMEOUT_S = 10.0


def _fuzz(gateway: FuzzGateway, seed: int, count: int, pool: list[tuple[str, Any]] | None = None) -> None:
    connects = 0

    def trace(name: str, info: dict[str, Any]) -> None:
        nonlocal connects
        connects += name == "connection.connect_tcp.complete"

    statuses: Counter[int] = Counter()
    server_errors: list[str] = []
    resets: list[str] = []
    slowest: list[tuple[float, int, str]] = []
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=TIMEOUT_S, limits=limits) as client:
        for n, (path, body) in enumerate(bodies(seed, count, pool)):
            # The stdlib encoder: orjson refuses integers past 64 bits, which are part of the fuzz.
            content = json.dumps(body).encode()
            headers = {"content-type": "application/json"}
            try:
                resp = client.post(path, content=content, headers=headers, extensions={"trace": trace})
            except httpx.TransportError as exc:
                resets.append(f"#{n} {path} {content[:300]!r} -> {exc!r}")
                continue
            statuses[resp.status_code] += 1
            slowest.append((resp.elapsed.total_seconds(), n, path))
            if resp.status_code >= 500:
                server_errors.append(
                    f"#{n} {resp.status_code} {path} {content[:3000]!r} -> {resp.text[:300]}"
                )
    print(f"seed {seed}: {count} bodies, statuses {dict(sorted(statuses.items()))}, connects {connects}")
    print("slowest:", sorted(slowest, reverse=True)[:5])
    report = "\n".join(server_errors[:40] + gateway.errors.last_frames()[:40])
    assert not server_errors, f"{len(server_errors)} of {count} answers were 5xx:\n{report}"
    assert not resets, f"{len(resets)} of {count} requests lost the connection:\n" + "\n".join(resets[:20])
    assert connects == 1, f"the connection was dropped: {connects} connects for {count} requests"


def test_fuzzed_v1_bodies_get_no_server_error(fuzz_gateway: FuzzGateway) -> None:
    _fuzz(fuzz_gateway, seed=14, count=FUZZ_COUNT)


@pytest.mark.slow
def test_fuzzed_v1_bodies_get_no_server_error_4000(fuzz_gateway: FuzzGateway) -> None:
    _fuzz(fuzz_gateway, seed=1414, count=SLOW_FUZZ_COUNT)


def test_fuzzed_responses_bodies_get_no_server_error(fuzz_gateway: FuzzGateway) -> None:
    _fuzz(fuzz_gateway, seed=20, count=FUZZ_COUNT, pool=responses_seeds())
