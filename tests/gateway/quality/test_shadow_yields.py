"""Shadow calls yield to clients: a job's call waits for a moment with no client request in flight,
for at most IDLE_WAIT_S, and never counts its own worker's snapshot as a client."""

from __future__ import annotations

import asyncio
import time

from gateway.config import parse_config
from gateway.live.runtime import LiveConfig
from gateway.quality.shadow import IDLE_WAIT_S, Shadower
from gateway.settings import Settings


def shadower() -> tuple[LiveConfig, Shadower]:
    live = LiveConfig(Settings(_env_file=None), {}, parse_config({"models": []}, {}), version=1)  # type: ignore[call-arg]
    return live, Shadower(live, None, lambda record: None)  # type: ignore[arg-type]


async def test_a_call_waits_while_a_client_request_is_in_flight_and_goes_once_it_leaves() -> None:
    live, shadow = shadower()
    client = live.enter()
    asyncio.get_running_loop().call_later(0.2, live.leave, client)
    started = time.monotonic()
    await shadow._until_idle()
    assert 0.2 <= time.monotonic() - started < 0.9  # went when the client left, not at the bound


async def test_a_busy_gateway_holds_a_call_back_at_most_the_bound() -> None:
    live, shadow = shadower()
    client = live.enter()
    started = time.monotonic()
    await shadow._until_idle()
    assert IDLE_WAIT_S <= time.monotonic() - started < IDLE_WAIT_S + 1.0
    live.leave(client)


async def test_an_idle_gateway_does_not_wait() -> None:
    live, shadow = shadower()
    started = time.monotonic()
    await shadow._until_idle()
    assert time.monotonic() - started < 0.2
    assert live.in_flight() == 0
