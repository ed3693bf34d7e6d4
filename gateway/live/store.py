"""The routing config's versions in the database: the newest is the one every replica runs.

A change appends a version (and its audit row) in one transaction; version numbers are the primary
key, so of two writers that read the same version only one can append the next (the other gets
StaleVersion, which the API answers with 409).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.db.models import AuditLog, ConfigVersion
from gateway.db.types import utcnow


class StaleVersion(Exception):
    """The change was made against `expected`, but `current` is the newest version."""

    def __init__(self, expected: int | None, current: int | None) -> None:
        super().__init__(f"config version {expected} is not the current one ({current})")
        self.expected = expected
        self.current = current


@dataclass(frozen=True, slots=True)
class Version:
    version: int
    document: dict[str, Any]
    author: str
    comment: str | None
    created_at: datetime
    hash: str


def document_hash(document: dict[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _version(row: ConfigVersion) -> Version:
    return Version(row.version, row.document, row.author, row.comment, row.created_at, row.hash)


class ConfigStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def current_version(self) -> int | None:
        """The newest version number (one indexed read: what each replica polls)."""
        async with self._sessions() as session:
            return await session.scalar(select(func.max(ConfigVersion.version)))

    async def latest(self) -> Version | None:
        async with self._sessions() as session:
            row = await session.scalar(select(ConfigVersion).order_by(ConfigVersion.version.desc()).limit(1))
            return _version(row) if row is not None else None

    async def get(self, version: int) -> Version | None:
        async with self._sessions() as session:
            row = await session.get(ConfigVersion, version)
            return _version(row) if row is not None else None

    async def history(self, limit: int = 100, before: int | None = None) -> list[Version]:
        """Newest first; `before`: only versions older than it (the next page)."""
        query = select(ConfigVersion).order_by(ConfigVersion.version.desc()).limit(limit)
        if before is not None:
            query = query.where(ConfigVersion.version < before)
        async with self._sessions() as session:
            return [_version(row) for row in await session.scalars(query)]

    async def append(
        self,
        document: dict[str, Any],
        author: str,
        comment: str | None = None,
        *,
        expected: int | None,
        action: str = "config.apply",
        detail: dict[str, Any] | None = None,
    ) -> Version:
        """Write `document` as the version after `expected` (None: the first) with its audit row.
        Raises StaleVersion when `expected` is not the newest version."""
        async with self._sessions() as session:
            current = await session.scalar(select(func.max(ConfigVersion.version)))
            if current != expected:
                raise StaleVersion(expected, current)
            row = ConfigVersion(
                version=(current or 0) + 1,
                document=document,
                author=author,
                comment=comment,
                created_at=utcnow(),
                hash=document_hash(document),
            )
            session.add(row)
            session.add(
                AuditLog(
                    ts=row.created_at,
                    actor=author,
                    action=action,
                    target=f"config:{row.version}",
                    detail={"version": row.version, **(detail or {})},
                )
            )
            try:
                await session.commit()
            except IntegrityError:
                # Another writer appended the same number first.
                raise StaleVersion(expected, None) from None
            return _version(row)

    async def seed(self, document: dict[str, Any], author: str) -> Version:
        """Version 1 from `document` when the table is empty; otherwise the newest version."""
        latest = await self.latest()
        if latest is not None:
            return latest
        try:
            return await self.append(
                document, author, "seeded at first start", expected=None, action="config.seed"
            )
        except StaleVersion:
            # Another replica seeded it first.
            latest = await self.latest()
            assert latest is not None
            return latest
