"""Prompt capture, a team's opt-in (`capture_prompts`): the request's messages and the answer's
bytes ride its request record to the spend writer, which stores them (gateway.accounting.captures)
until the team's retention has passed; the purge job deletes them then."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounting.captures import purge_captures
from gateway.accounting.record import Capture
from gateway.auth_store import Principal

log = logging.getLogger("switchyard.quality")
DEFAULT_RETENTION_DAYS = 30
# Endpoints whose requests are captured: a conversation (or prompt) and an answer to it.
CAPTURED = ("chat", "text", "messages")


def capture_of(principal: Principal, endpoint: str, body: dict[str, Any], answer: bytes) -> Capture | None:
    """What to keep of an answered request: None unless its team captures prompts."""
    if not principal.capture_prompts or endpoint not in CAPTURED:
        return None
    days = principal.capture_retention_days or DEFAULT_RETENTION_DAYS
    prompt = body.get("messages", body.get("prompt"))
    return Capture(prompt, answer, datetime.now(UTC) + timedelta(days=days))


async def purge(engine: AsyncEngine) -> int:
    """Delete the captured prompts past their retention now; how many went."""
    async with engine.begin() as conn:
        return await purge_captures(conn, datetime.now(UTC))


async def purge_every(engine: AsyncEngine, interval_s: float) -> None:
    """The purge job of a running gateway: at start, then every `interval_s`. A purge that fails (a
    database that does not answer) is logged and tried again next time; cancelling ends the job."""
    while True:
        try:
            gone = await purge(engine)
        except Exception:
            # Said each time: prompts kept past their retention are a compliance matter, not noise.
            log.warning("captured prompts could not be purged, next try in %g s", interval_s, exc_info=True)
        else:
            if gone:
                log.info("purged %d captured prompts past their retention", gone)
        await asyncio.sleep(interval_s)
