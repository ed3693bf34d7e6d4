"""A team's routing overrides on a real gateway (`create_app`, in process, on the session's
PostgreSQL), driven with the `openai` SDK: a valid override steers the route, a tier pin no candidate
meets is a recorded 400, and a row written before overrides were checked (anything at all in
`teams.routing`) is ignored with a log line instead of failing every routed request with a 500.

The route: auto [small, large], quality 0, so the small tier serves unless a pin says otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
from sqlalchemy import update

from gateway.app import create_app
from gateway.config import parse_config
from gateway.db.engine import make_engine, session_factory
from gateway.db.models import Team
from gateway.settings import Settings
from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import MASTER_KEY
from tests.integration.harness import Credentials, deployment, new_key, wait_rows

HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def gateway_url(
    pg_url: str, upstream: ServerThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=pg_url,
        master_key=MASTER_KEY,
        spool_dir=tmp_path_factory.mktemp("team-routing") / "spool",
        spend_flush_interval_s=0.1,
        local_model=False,
    )
    models = [
        {**deployment("small", upstream.url, 0.15, 0.6), "tier": "small"},
        {**deployment("large", upstream.url, 2.5, 10.0), "tier": "large"},
    ]
    routes = {"auto": {"candidates": ["small", "large"], "quality": 0.0}}
    with ServerThread(create_app(settings, parse_config({"models": models, "routes": routes}, {}))) as srv:
        yield srv.url


@pytest.fixture
async def sdk(gateway_url: str) -> AsyncIterator[Any]:
    clients: list[openai.AsyncOpenAI] = []

    def make(creds: Credentials) -> openai.AsyncOpenAI:
        c = openai.AsyncOpenAI(base_url=gateway_url + "/v1", api_key=creds.key, max_retries=0, timeout=10.0)
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.close()


async def routed(client: openai.AsyncOpenAI) -> tuple[str, str]:
    raw = await client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    return raw.headers["x-switchyard-model"], raw.headers["x-switchyard-route"]


@pytest.mark.parametrize(
    "routing",
    [
        {"min_tier": "large"},
        {"max_tier": "small", "routes": {"auto": {"min_tier": "large", "max_tier": "large"}}},
    ],
)
async def test_a_team_override_steers_the_route(pg_url: str, sdk: Any, routing: dict[str, Any]) -> None:
    plain = sdk(await new_key(pg_url))
    assert (await routed(plain))[0] == "small"
    model, explain = await routed(sdk(await new_key(pg_url, team={"routing": routing})))
    assert model == "large" and "team>=large" in explain


async def test_a_team_pin_no_candidate_meets_is_a_recorded_400(pg_url: str, sdk: Any) -> None:
    creds = await new_key(pg_url, team={"routing": {"max_tier": "local"}})
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(creds).chat.completions.create(model="auto", messages=HELLO)
    offered = "small (small), large (large)"
    assert caught.value.body == {
        "message": f"no candidate of `auto` meets the team's max_tier local: it offers {offered}",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    rows = await wait_rows(pg_url, creds.key_id, 1)
    assert [(r.status, r.error_type, r.requested_model) for r in rows] == [
        (400, "invalid_request_error", "auto")
    ]


@pytest.mark.parametrize(
    "stored",
    [
        {"quality": "high"},  # once a TypeError in the policy: every routed request a 500
        {"qualty": 0.8},
        {"max_tier": "giant"},
        {"quality": 0.5, "strong_fraction": 0.5},
        {"auto": {"quality": "high"}},
        ["not", "an", "object"],
        "fast",
    ],
)
async def test_a_bad_stored_override_is_ignored_not_a_500(
    pg_url: str, sdk: Any, caplog: pytest.LogCaptureFixture, stored: Any
) -> None:
    creds = await new_key(pg_url)
    engine = make_engine(pg_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            await session.execute(update(Team).where(Team.id == creds.team_id).values(routing=stored))
    finally:
        await engine.dispose()
    with caplog.at_level(logging.WARNING, logger="switchyard.auth"):
        model, explain = await routed(sdk(creds))
    assert model == "small" and "pins=" not in explain
    assert f"team {creds.team_id}: stored routing override ignored" in caplog.text


async def test_a_row_in_the_shape_before_the_schema_still_steers_its_route(pg_url: str, sdk: Any) -> None:
    """`{"auto": {...}}` was applied to the routed name `auto` before `routes` existed."""
    creds = await new_key(pg_url)
    engine = make_engine(pg_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            legacy = {"auto": {"min_tier": "large"}}
            await session.execute(update(Team).where(Team.id == creds.team_id).values(routing=legacy))
    finally:
        await engine.dispose()
    model, explain = await routed(sdk(creds))
    assert model == "large" and "team>=large" in explain
