"""Stored responses: written when a response finishes with `store: true`, read back for
`previous_response_id`, GET, DELETE and input_items, only by the key that made them, and purged past
the retention setting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.auth_store import Principal
from gateway.db.models import StoredResponse
from gateway.errors import GatewayError

log = logging.getLogger("switchyard.responses")
# How often the purge runs; a response past retention is already invisible in between (`get`).
PURGE_INTERVAL_S = 3600.0


def owner_of(principal: Principal) -> str:
    """Whose stored responses a caller reads: its key's, or the master's or anonymous callers'."""
    return principal.key_id or principal.kind


def not_found(response_id: str) -> GatewayError:
    # The same answer for another key's response as for none: ids are not to be probed.
    return GatewayError(
        404, f"No response found with id '{response_id[:100]}'.", code="not_found", param="response_id"
    )


def _storable(response_id: str) -> bool:
    # PostgreSQL text holds no NUL: such an id was never stored, and asking would be an error.
    return "\x00" not in response_id


def unavailable() -> GatewayError:
    return GatewayError(503, "the response store is unavailable; try again", type="api_error")


@dataclass(frozen=True, slots=True)
class Stored:
    context: list[Any]
    response: dict[str, Any]

    def history(self) -> list[Any]:
        """The conversation up to and including this response, as the next request's first items."""
        return [*self.context, *(self.response.get("output") or ())]


class ResponseStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], retention_days: float) -> None:
        self._sessions = sessions
        self._retention = timedelta(days=retention_days) if retention_days > 0 else None
        self._purger: asyncio.Task[None] | None = None

    def _live_since(self, now: datetime) -> datetime | None:
        return None if self._retention is None else now - self._retention

    async def save(self, owner: str, response: dict[str, Any], context: list[Any]) -> None:
        """Keep `response`; a database that fails here costs the client its chain, not its answer."""
        try:
            async with self._sessions.begin() as s:
                s.add(
                    StoredResponse(
                        id=response["id"],
                        owner=owner,
                        context=orjson.dumps(context).decode(),
                        response=orjson.dumps(response).decode(),
                    )
                )
        except (SQLAlchemyError, OSError, TypeError):
            log.warning("response %s could not be stored", response["id"], exc_info=True)

    async def get(self, owner: str, response_id: str) -> Stored:
        """The stored response, or a 404 when there is none this owner may read."""
        if not _storable(response_id):
            raise not_found(response_id)
        try:
            async with self._sessions() as s:
                row = await s.get(StoredResponse, response_id[:64])
        except (SQLAlchemyError, OSError):
            log.warning("the response store could not be read", exc_info=True)
            raise unavailable() from None
        since = self._live_since(datetime.now(UTC))
        if row is None or row.owner != owner or (since is not None and row.created_at < since):
            raise not_found(response_id)
        return Stored(orjson.loads(row.context), orjson.loads(row.response))

    async def delete(self, owner: str, response_id: str) -> None:
        if not _storable(response_id):
            raise not_found(response_id)
        try:
            async with self._sessions.begin() as s:
                gone = await s.execute(
                    delete(StoredResponse).where(
                        StoredResponse.id == response_id[:64], StoredResponse.owner == owner
                    )
                )
        except (SQLAlchemyError, OSError):
            log.warning("the response store could not be written", exc_info=True)
            raise unavailable() from None
        if not gone.rowcount:  # type: ignore[attr-defined]
            raise not_found(response_id)

    async def purge(self, now: datetime | None = None) -> int:
        """Delete the responses past retention; how many went."""
        since = self._live_since(now or datetime.now(UTC))
        if since is None:
            return 0
        async with self._sessions.begin() as s:
            gone = await s.execute(delete(StoredResponse).where(StoredResponse.created_at < since))
        return int(gone.rowcount or 0)  # type: ignore[attr-defined]

    def start(self) -> None:
        if self._retention is not None:
            self._purger = asyncio.create_task(self._purge_forever())

    async def _purge_forever(self) -> None:
        while True:
            try:
                gone = await self.purge()
                if gone:
                    log.info("purged %d stored responses past retention", gone)
            except (SQLAlchemyError, OSError):
                log.warning("stored responses could not be purged", exc_info=True)
            await asyncio.sleep(PURGE_INTERVAL_S)

    async def aclose(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
