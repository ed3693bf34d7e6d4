"""The fuzz tests' gateway: the real app (`create_app`) on a real, migrated PostgreSQL database, served on
127.0.0.1 in front of the fake upstreams, with the master key.

  fuzz_gateway     a FuzzGateway: its url, and the server errors it logged (tracebacks) while serving
  FUZZ_MODELS      the names it serves (see fuzz_harness)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.app import create_app
from tests.e2e.fuzz.fuzz_harness import FuzzGateway, LoggedErrors, fuzz_config, fuzz_settings, pg_database
from tests.fakes import anthropic_upstream, gemini_upstream, openai_upstream
from tests.fakes.server import ServerThread


@pytest.fixture(scope="session")
async def fuzz_pg_url() -> AsyncIterator[str]:
    async with pg_database("fuzz") as url:
        yield url


@pytest.fixture(scope="session")
def fuzz_gateway(fuzz_pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzGateway]:
    state_dir = tmp_path_factory.mktemp("fuzz-gateway")
    with (
        ServerThread(openai_upstream.create_app(hang_seconds=3.0)) as oa,
        ServerThread(anthropic_upstream.create_app()) as an,
        ServerThread(gemini_upstream.create_app(hang_seconds=3.0)) as ge,
        LoggedErrors() as errors,
    ):
        app = create_app(fuzz_settings(state_dir, fuzz_pg_url), fuzz_config(oa.url, an.url, ge.url))
        with ServerThread(app) as gw:
            yield FuzzGateway(gw.url, errors)
