"""Labelled traffic as training rows for the router (`switchyard quality export`, and for
`switchyard route train --traffic`): one row per captured request that has a label, a judge's
verdict or the client's feedback.

A row (one JSON object a line in the file):
  request_id   the request's id
  team_id      its team (null: no team)
  route        the routed name it asked for
  ts           when it arrived (ISO 8601, UTC)
  prompt       the conversation as plain text (gateway.quality.judging.conversation_text)
  messages     the messages as the client sent them
  answered_by  {"deployment", "tier"}: who answered the client
  tiers        {tier: outcome} for each tier judged against the route's strongest candidate:
               {"judged": "win" | "tie" | "loss", "against": strongest deployment id, "votes": [...]}
  feedback     {"score": 0..1, "label", "comment"} or null: the client's rating of the answer
Requests without a captured prompt have no text to learn from and are left out (their labels still
count in the quality estimate).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gateway.db.labels import CapturedPrompt, Feedback, ShadowVerdict
from gateway.db.models import RequestLog
from gateway.quality.judging import conversation_text

PAGE = 500


async def labelled_rows(
    session: AsyncSession, *, team_id: str | None = None, since: datetime | None = None
) -> AsyncIterator[dict[str, Any]]:
    """The training rows, oldest first; `team_id` or `since` narrow them."""
    c = CapturedPrompt
    judged = select(ShadowVerdict.request_id).where(ShadowVerdict.request_id == c.request_id).exists()
    rated = select(Feedback.request_id).where(Feedback.request_id == c.request_id).exists()
    where = [or_(judged, rated)]
    if team_id is not None:
        where.append(c.team_id == team_id)
    if since is not None:
        where.append(c.ts >= since)
    after: tuple[datetime, str] | None = None
    while True:
        stmt = select(c).where(*where).order_by(c.ts, c.request_id).limit(PAGE)
        if after is not None:
            stmt = stmt.where(or_(c.ts > after[0], (c.ts == after[0]) & (c.request_id > after[1])))
        page = list((await session.execute(stmt)).scalars())
        if not page:
            return
        for row in await _rows(session, page):
            yield row
        after = (page[-1].ts, page[-1].request_id)


async def _rows(session: AsyncSession, captures: Sequence[CapturedPrompt]) -> list[dict[str, Any]]:
    ids = [c.request_id for c in captures]
    logged = {r.request_id: r for r in await _of(session, RequestLog, ids)}
    verdicts: dict[str, list[ShadowVerdict]] = {}
    for v in await _of(session, ShadowVerdict, ids):
        verdicts.setdefault(v.request_id, []).append(v)
    ratings = {f.request_id: f for f in await _of(session, Feedback, ids)}
    out = []
    for c in captures:
        log = logged.get(c.request_id)
        rating = ratings.get(c.request_id)
        out.append(
            {
                "request_id": c.request_id,
                "team_id": c.team_id,
                "route": c.route,
                "ts": c.ts.isoformat(),
                "prompt": conversation_text(c.messages),
                "messages": c.messages,
                "answered_by": {
                    "deployment": log.deployment if log else None,
                    "tier": log.tier if log else None,
                },
                "tiers": {
                    v.tier: {"judged": v.outcome, "against": v.strong_deployment, "votes": v.votes}
                    for v in verdicts.get(c.request_id, [])
                },
                "feedback": None
                if rating is None
                else {"score": rating.score, "label": rating.label, "comment": rating.comment},
            }
        )
    return out


async def _of(session: AsyncSession, table: Any, ids: list[str]) -> list[Any]:
    return list((await session.execute(select(table).where(table.request_id.in_(ids)))).scalars())


async def export_jsonl(
    engine: AsyncEngine, path: Path, *, team_id: str | None = None, since: datetime | None = None
) -> int:
    """Write the training rows to `path`, one JSON object a line; how many were written."""
    n = 0
    async with AsyncSession(engine) as session:
        with path.open("wb") as f:
            async for row in labelled_rows(session, team_id=team_id, since=since):
                f.write(orjson.dumps(row) + b"\n")
                n += 1
    return n
