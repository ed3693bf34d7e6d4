"""Feedback, prompt capture and the quality estimate on a real gateway (in process, the session's
PostgreSQL, the fake judge upstream): a team rates only its own requests (another team's id is a
404, a bad body a 400), capture is opt-in and purged past its retention, the quality endpoint's
numbers, and the export of labelled traffic as training rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from sqlalchemy import update

from gateway.cli import main
from gateway.db.engine import make_engine
from gateway.db.labels import CapturedPrompt, Feedback, ShadowVerdict
from gateway.db.models import RequestLog
from gateway.quality.capture import purge
from tests.fakes.judge_upstream import JudgeUpstream
from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import MASTER_KEY
from tests.integration.harness import new_key
from tests.integration.quality_harness import (
    SHADOW_COST,
    ask,
    call_cost,
    quality_gateway,
    route,
    rows,
    wait_for,
)


@pytest.fixture(scope="module")
def fake() -> Iterator[JudgeUpstream]:
    judge = JudgeUpstream()
    with ServerThread(judge.app) as srv:
        judge.url = srv.url  # type: ignore[attr-defined]
        yield judge


@pytest.fixture(scope="module")
def gateway(pg_url: str, fake: JudgeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    routes = {"judged": route(1.0), "plain": route(0.0)}
    spool = tmp_path_factory.mktemp("quality") / "spool"
    with quality_gateway(pg_url, fake.url, spool, routes) as url:  # type: ignore[attr-defined]
        yield url


@pytest.fixture
async def http(gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway, timeout=10.0) as client:
        yield client


async def logged(pg_url: str, request_id: str) -> None:
    assert await wait_for(pg_url, RequestLog, 1, RequestLog.request_id == request_id)


def feedback(http: httpx.AsyncClient, key: str, body: Any) -> Any:
    return http.post("/v1/feedback", json=body, headers={"authorization": f"Bearer {key}"})


async def test_a_team_rates_its_own_requests_only(pg_url: str, gateway: str, http: httpx.AsyncClient) -> None:
    mine, theirs = await new_key(pg_url), await new_key(pg_url)
    rid = await ask(gateway, mine.key, "plain")
    await logged(pg_url, rid)
    body = {"request_id": rid, "score": 0.25, "label": "wrong", "comment": "missed the point"}

    other = await feedback(http, theirs.key, body)
    assert other.status_code == 404
    assert other.json()["error"]["type"] == "not_found_error"
    unknown = await feedback(http, mine.key, {**body, "request_id": "req_nothing"})
    assert unknown.status_code == 404

    ok = await feedback(http, mine.key, body)
    assert ok.status_code == 200, ok.text
    assert ok.json()["score"] == 0.25
    # Rating again replaces the rating.
    assert (await feedback(http, mine.key, {"request_id": rid, "score": 1})).status_code == 200
    (stored,) = await rows(pg_url, Feedback, Feedback.request_id == rid)
    assert (stored.team_id, stored.key_id, stored.score, stored.label) == (
        mine.team_id,
        mine.key_id,
        1.0,
        None,
    )


@pytest.mark.parametrize(
    "body",
    [
        {"score": 0.5},
        {"request_id": "req_x", "score": 1.5},
        {"request_id": "req_x", "score": -0.1},
        {"request_id": "req_x", "score": "good"},
        {"request_id": "req_x", "score": "0.5"},
        {"request_id": "req_x", "score": False},
        {"request_id": "req_x", "score": 0.5, "stars": 5},
        {"request_id": "req_x\u0000", "score": 0.5},
        [1, 2],
    ],
)
async def test_a_bad_feedback_body_is_a_400(pg_url: str, http: httpx.AsyncClient, body: Any) -> None:
    creds = await new_key(pg_url)
    resp = await feedback(http, creds.key, body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["type"] == "invalid_request_error"


async def test_feedback_needs_a_key(http: httpx.AsyncClient) -> None:
    resp = await http.post("/v1/feedback", json={"request_id": "req_x", "score": 1})
    assert resp.status_code == 401


async def test_capture_is_opt_in_and_purged_past_retention(pg_url: str, gateway: str, tmp_path: Path) -> None:
    capturing = await new_key(pg_url, team={"capture_prompts": True, "capture_retention_days": 7})
    plain = await new_key(pg_url)
    kept = await ask(gateway, capturing.key, "plain", "What is 2+2?")
    skipped = await ask(gateway, plain.key, "plain", "What is 3+3?")
    await logged(pg_url, skipped)
    (row,) = await wait_for(pg_url, CapturedPrompt, 1, CapturedPrompt.request_id == kept)
    assert row.messages == [{"role": "user", "content": "What is 2+2?"}]
    assert row.answer == "cheap-model answer"
    assert (row.team_id, row.route) == (capturing.team_id, "plain")
    assert timedelta(days=6.9) < row.expires_at - datetime.now(UTC) < timedelta(days=7)
    assert await rows(pg_url, CapturedPrompt, CapturedPrompt.team_id == plain.team_id) == []

    engine = make_engine(pg_url)
    try:
        await purge(engine)  # nothing is due yet
        assert len(await rows(pg_url, CapturedPrompt, CapturedPrompt.request_id == kept)) == 1
        async with engine.begin() as conn:
            past = datetime.now(UTC) - timedelta(seconds=1)
            await conn.execute(
                update(CapturedPrompt).where(CapturedPrompt.request_id == kept).values(expires_at=past)
            )
    finally:
        await engine.dispose()
    config = tmp_path / "purge.yaml"
    config.write_text(orjson.dumps({"settings": {"database_url": pg_url}}).decode())
    assert await asyncio.to_thread(main, ["quality", "purge", "--config", str(config)]) == 0
    assert await rows(pg_url, CapturedPrompt, CapturedPrompt.request_id == kept) == []


async def test_quality_endpoint_numbers_and_the_training_export(
    pg_url: str, gateway: str, http: httpx.AsyncClient, fake: JudgeUpstream, tmp_path: Path
) -> None:
    creds = await new_key(pg_url, team={"capture_prompts": True})
    ids = []
    for i, mode in enumerate(("cheap", "cheap", "A", "strong")):
        fake.mode = mode
        ids.append(await ask(gateway, creds.key, "judged", f"question {i}"))
        await wait_for(pg_url, ShadowVerdict, i + 1, ShadowVerdict.team_id == creds.team_id)
    for rid in ids:
        await logged(pg_url, rid)
    for rid, score in zip(ids[:2], (1.0, 0.5), strict=True):
        assert (await feedback(http, creds.key, {"request_id": rid, "score": score})).status_code == 200

    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    assert (await http.get("/admin/routing/quality")).status_code == 401
    resp = await http.get("/admin/routing/quality", params={"team_id": creds.team_id}, headers=admin)
    assert resp.status_code == 200, resp.text
    (row,) = resp.json()["rows"]
    assert (row["route"], row["team_id"], row["tier"], row["requests"], row["judged"]) == (
        "judged",
        creds.team_id,
        "small",
        4,
        4,
    )
    assert (row["win"]["count"], row["tie"]["count"], row["loss"]["count"]) == (2, 1, 1)
    assert row["win"]["rate"] == 0.5
    # Wilson 95% of 2 in 4.
    assert row["win"]["low"] == pytest.approx(0.1500, abs=1e-4)
    assert row["win"]["high"] == pytest.approx(0.8500, abs=1e-4)
    assert row["not_worse"]["count"] == 3
    assert Decimal(row["cost_usd"]) == 4 * call_cost("cheap")
    assert Decimal(row["saved_usd"]) == 4 * (call_cost("strong") - call_cost("cheap"))
    assert Decimal(row["shadow_cost_usd"]) == 4 * SHADOW_COST
    assert row["feedback"] == {"count": 2, "mean_score": 0.75}
    bad = await http.get(
        "/admin/routing/quality", params={"start": "2026-12-02", "end": "2026-12-01"}, headers=admin
    )
    assert bad.status_code == 400

    out = tmp_path / "rows.jsonl"
    config = tmp_path / "export.yaml"
    config.write_text(orjson.dumps({"settings": {"database_url": pg_url}}).decode())
    args = ["quality", "export", "--out", str(out), "--team-id", creds.team_id, "--config", str(config)]
    assert await asyncio.to_thread(main, args) == 0
    exported = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [r["request_id"] for r in exported] == ids
    first = exported[0]
    assert first["prompt"] == "[user] question 0"
    assert first["answered_by"] == {"deployment": "cheap", "tier": "small"}
    assert first["tiers"] == {"small": {"judged": "win", "against": "strong", "votes": ["A", "B"]}}
    assert first["feedback"] == {"score": 1.0, "label": None, "comment": None}
    assert [r["tiers"]["small"]["judged"] for r in exported] == ["win", "win", "tie", "loss"]


async def test_the_anthropic_door_is_shadowed_and_captured_too(
    pg_url: str, gateway: str, fake: JudgeUpstream
) -> None:
    fake.mode = "cheap"
    creds = await new_key(pg_url, team={"capture_prompts": True})
    async with anthropic.AsyncAnthropic(base_url=gateway, api_key=creds.key, max_retries=0) as client:
        raw = await client.messages.with_raw_response.create(
            model="judged", max_tokens=50, messages=[{"role": "user", "content": "Name a colour"}]
        )
    rid = raw.headers["x-switchyard-request-id"]
    (verdict,) = await wait_for(pg_url, ShadowVerdict, 1, ShadowVerdict.request_id == rid)
    assert (verdict.outcome, verdict.votes) == ("win", ["A", "B"])
    (captured,) = await wait_for(pg_url, CapturedPrompt, 1, CapturedPrompt.request_id == rid)
    assert captured.answer == "cheap-model answer"
    assert captured.messages == [{"role": "user", "content": "Name a colour"}]
