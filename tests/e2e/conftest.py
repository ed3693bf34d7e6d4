"""End-to-end fixtures: the real gateway (`create_app`) served on 127.0.0.1 in front of the fake upstreams.

One gateway per test session, driven only through the official SDKs (and raw httpx for what an SDK
cannot send). Its config, one model name per scenario, is `gateway_config` in
`tests.e2e.gateway_harness`, which also lists the names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anthropic
import httpx
import openai
import pytest

from gateway.app import create_app
from tests.e2e.gateway_harness import (
    CLIENT_TIMEOUT_S,
    MASTER_KEY,
    Gateway,
    db_url,
    gateway_config,
    gateway_settings,
)
from tests.e2e.slow_upstream import SlowUpstream
from tests.fakes import anthropic_upstream, gemini_upstream, openai_upstream
from tests.fakes.server import ServerThread

# --------------------------------------------------------------------------- the gateway


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    state_dir = tmp_path_factory.mktemp("gateway-state")
    slow = SlowUpstream()
    with (
        ServerThread(openai_upstream.create_app(hang_seconds=3.0)) as oa,
        ServerThread(anthropic_upstream.create_app()) as an,
        ServerThread(gemini_upstream.create_app(hang_seconds=3.0)) as ge,
        ServerThread(slow) as sl,
    ):
        config = gateway_config(oa.url, an.url, ge.url, sl.url)
        with ServerThread(create_app(gateway_settings(state_dir), config)) as gw:
            yield Gateway(gw.url, oa, an, ge, slow, db_url(state_dir))


# --------------------------------------------------------------------------- SDK clients


@pytest.fixture(scope="session")
def client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
    ) as c:
        yield c


@pytest.fixture
async def aclient(gateway: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    c = openai.AsyncOpenAI(
        base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    async with c:
        yield c


@pytest.fixture(scope="session")
def claude_client(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
    ) as c:
        yield c


@pytest.fixture(scope="session")
def raw(gateway: Gateway) -> Iterator[httpx.Client]:
    """Plain httpx against the gateway, authenticated, for what no SDK will send."""
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=CLIENT_TIMEOUT_S) as c:
        yield c
