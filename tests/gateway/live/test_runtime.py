"""LiveConfig: a change is one atomic swap; a request keeps its snapshot; unchanged deployments keep
their provider (and its connection pool); a removed one closes after its last request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.config import GatewayConfig, parse_config
from gateway.live.runtime import LiveConfig
from gateway.settings import Settings
from providers.base import Endpoint, UpstreamCall
from tests.fakes.openai_upstream import create_app
from tests.fakes.server import ServerThread


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with ServerThread(create_app()) as srv:
        yield srv.url + "/v1"


def config(base: str, *names: str, routes: dict[str, Any] | None = None, **changed: Any) -> GatewayConfig:
    models = [
        {"name": n, "provider": "openai", "model": "gpt-4o-mini", "api_base": base, "api_key": "sk-x"}
        | changed.get(n, {})
        for n in names
    ]
    return parse_config({"models": models, "routes": routes or {}}, {})


async def call(provider: Any) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    response = await provider.complete(UpstreamCall(body, Endpoint.CHAT))
    assert response.usage is not None


def live_on(cfg: GatewayConfig) -> LiveConfig:
    return LiveConfig(Settings(), {}, cfg, version=1)


async def test_a_request_keeps_its_snapshot_and_unchanged_providers_are_kept(upstream: str) -> None:
    live = live_on(config(upstream, "a", "b"))
    before = live.enter()
    changed = config(upstream, "a", "b", b={"tier": "large"}, routes={"r": {"candidates": ["a"]}})
    after = live.apply(changed, 2)
    assert live.current is after and live.version == 2
    assert before.version == 1 and "r" not in before.names and "r" in after.names
    assert after.providers["a"] is before.providers["a"]  # same settings: same pool
    assert after.providers["b"] is not before.providers["b"]  # changed: a new one
    live.leave(before)
    await live.aclose()


async def test_a_removed_provider_closes_after_its_last_request(upstream: str) -> None:
    live = live_on(config(upstream, "a", "gone"))
    running = live.enter()
    gone = running.providers["gone"]
    await call(gone)  # opens its pool
    live.apply(config(upstream, "a"), 2)
    await asyncio.sleep(0.05)
    assert "gone" not in live.current.providers
    await call(gone)  # still usable by the request that started on version 1
    live.leave(running)
    await asyncio.sleep(0.05)
    assert gone._http._session.closed  # type: ignore[attr-defined]
    assert gone not in live.providers()
    await live.aclose()


async def test_a_provider_no_request_holds_closes_at_once(upstream: str) -> None:
    live = live_on(config(upstream, "a", "gone"))
    gone = live.current.providers["gone"]
    await call(gone)
    live.apply(config(upstream, "a"), 2)
    await asyncio.sleep(0.05)
    assert gone._http._session.closed  # type: ignore[attr-defined]
    await live.aclose()


async def test_a_provider_kept_through_a_change_is_not_closed(upstream: str) -> None:
    live = live_on(config(upstream, "a", "b"))
    a = live.current.providers["a"]
    await call(a)
    held = live.enter()
    live.apply(config(upstream, "a"), 2)
    live.apply(config(upstream, "a", "c"), 3)
    live.leave(held)
    await asyncio.sleep(0.05)
    assert not a._http._session.closed  # type: ignore[attr-defined]
    await call(live.current.providers["a"])
    await live.aclose()
    assert a._http._session.closed  # type: ignore[attr-defined]


async def test_a_cooldown_survives_a_change_that_keeps_the_deployment(upstream: str) -> None:
    live = live_on(config(upstream, "a", "b"))
    dep = live.current.dispatcher.deployments("a")[0]
    for _ in range(Settings().cooldown_failures):
        live.current.dispatcher._failed(dep)
    assert not live.current.dispatcher.healthy(dep)
    live.apply(config(upstream, "a"), 2)
    assert not live.current.dispatcher.healthy(live.current.dispatcher.deployments("a")[0])
    live.apply(config(upstream, "a", a={"tier": "large"}), 3)  # a new provider: a fresh record
    assert live.current.dispatcher.healthy(live.current.dispatcher.deployments("a")[0])
    await live.aclose()
