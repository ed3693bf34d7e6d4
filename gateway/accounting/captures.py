"""Captured prompts (a team's opt-in, gateway.quality): written by the spend writer with their
request's log row, in the same transaction, and purged once their team's retention has passed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Table, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.accounting.record import RequestRecord
from gateway.db.labels import CapturedPrompt

_TABLE: Table = CapturedPrompt.__table__  # type: ignore[assignment]


def answer_text(payload: bytes) -> str:
    """The answer's text from a response body in any door's shape (OpenAI chat or text completion,
    Anthropic messages); a body of another shape is kept as it came."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload.decode("utf-8", "replace")
    if isinstance(data, dict):
        choices = data.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            first = choices[0]
            message = first.get("message")
            if isinstance(message, dict):
                content = message.get("content")
                if isinstance(content, str):
                    return content
                return orjson.dumps(message.get("tool_calls") or content).decode()
            if isinstance(first.get("text"), str):
                return first["text"]
        blocks = data.get("content")
        if isinstance(blocks, list):
            return "".join(b.get("text", "") for b in blocks if isinstance(b, dict))
    return payload.decode("utf-8", "replace")


def _no_nul(value: Any) -> Any:
    """PostgreSQL's jsonb and text refuse NUL, and a refused row would fail its request's log row too."""
    text = orjson.dumps(value).decode()
    return orjson.loads(text.replace("\\u0000", "\\ufffd")) if "\\u0000" in text else value


def capture_rows(records: Sequence[RequestRecord]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        if r.capture is None:
            continue
        rows.append(
            {
                "request_id": r.request_id,
                "ts": r.ts,
                "team_id": r.team_id,
                "route": r.route,
                "messages": _no_nul(r.capture.messages),
                "answer": answer_text(r.capture.answer).replace("\x00", "\ufffd"),
                "expires_at": r.capture.expires_at,
            }
        )
    return rows


async def write_captures(conn: AsyncConnection, records: Sequence[RequestRecord]) -> None:
    """The captures of `records` (newly logged ones), in the caller's transaction."""
    rows = capture_rows(records)
    if not rows:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    await conn.execute(insert(_TABLE).on_conflict_do_nothing(index_elements=["request_id"]), rows)


async def purge_captures(conn: AsyncConnection, now: datetime) -> int:
    """Delete the captures whose retention has passed; how many went."""
    result = await conn.execute(delete(_TABLE).where(_TABLE.c.expires_at <= now))
    return int(result.rowcount or 0)
