"""Who is calling: the master key, a virtual key (`sk-sy-...`), or nobody (loopback-only servers).

Virtual keys are stored as SHA-256 hashes (they carry 256 bits of randomness, so a slow hash buys
nothing) and looked up by hash; the result is cached in memory with a TTL. An admin change publishes
on Redis so every replica drops its cached copy at once; without Redis the TTL bounds staleness.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.accounting.queries import period_spend
from gateway.db.models import ApiKey, Team
from gateway.errors import GatewayError

log = logging.getLogger("switchyard.auth")

KEY_PREFIX = "sk-sy-"
CHANNEL = "switchyard:auth:invalidate"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + 4]


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["master", "key", "anonymous"]
    key_id: str | None = None
    team_id: str | None = None
    key_rpm: int | None = None
    key_tpm: int | None = None
    team_rpm: int | None = None
    team_tpm: int | None = None
    key_budget_usd: Decimal | None = None
    key_budget_period: str | None = None
    team_budget_usd: Decimal | None = None
    team_budget_period: str | None = None
    team_routing: dict[str, Any] | None = None
    expires_at: datetime | None = None
    # Durable spend this period when the key was loaded: seeds the limiter's budget counters.
    team_spent_usd: Decimal | None = None
    key_spent_usd: Decimal | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


MASTER = Principal("master")
ANONYMOUS = Principal("anonymous")


class KeyCache:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], ttl_s: float = 60.0, negative_ttl_s: float = 5.0
    ) -> None:
        self._sessions = sessions
        self._ttl = ttl_s
        self._negative_ttl = negative_ttl_s
        self._entries: dict[str, tuple[float, Principal | None]] = {}
        self._redis: Any = None
        self._listener: asyncio.Task[None] | None = None

    async def lookup(self, key: str) -> Principal | None:
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._entries.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            principal = await self._load(digest)
        except (OSError, SQLAlchemyError, TimeoutError):
            if hit is not None:
                # The database is down: keep honouring what we knew, and look again shortly.
                self._entries[digest] = (now + self._negative_ttl, hit[1])
                return hit[1]
            log.warning("key lookup failed: the database is unreachable")
            raise GatewayError(
                503,
                "the key store is unreachable; retry shortly",
                type="service_unavailable_error",
                code="auth_store_unavailable",
                headers={"retry-after": "1"},
            ) from None
        self._entries[digest] = (now + (self._ttl if principal else self._negative_ttl), principal)
        return principal

    async def _load(self, digest: str) -> Principal | None:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(ApiKey, Team)
                    .join(Team, Team.id == ApiKey.team_id)
                    .where(ApiKey.key_hash == digest)
                )
            ).first()
        if row is None:
            return None
        key, team = row
        if key.revoked or team.deleted_at is not None:
            return None
        # The stored hash matched by index; compare again in constant time before trusting it.
        if not hmac.compare_digest(key.key_hash, digest):
            return None
        principal = Principal(
            "key",
            key_id=key.id,
            team_id=team.id,
            key_rpm=key.rpm,
            key_tpm=key.tpm,
            team_rpm=team.rpm,
            team_tpm=team.tpm,
            key_budget_usd=key.budget_usd,
            key_budget_period=key.budget_period,
            team_budget_usd=team.budget_usd,
            team_budget_period=team.budget_period,
            team_routing=team.routing,
            expires_at=key.expires_at,
        )
        team_spent, key_spent = await durable_spend(self._sessions, principal, now_utc())
        return dataclasses.replace(principal, team_spent_usd=team_spent, key_spent_usd=key_spent)

    def drop_local(self, key_id: str | None = None, team_id: str | None = None) -> None:
        if key_id is None and team_id is None:
            self._entries.clear()
            return
        for digest, (_, p) in list(self._entries.items()):
            if p is None or (key_id and p.key_id == key_id) or (team_id and p.team_id == team_id):
                self._entries.pop(digest, None)

    async def invalidate(self, key_id: str | None = None, team_id: str | None = None) -> None:
        """Drop cached entries here and, through Redis, on every other replica."""
        self.drop_local(key_id, team_id)
        if self._redis is not None:
            message = f"key:{key_id}" if key_id else f"team:{team_id}" if team_id else "all"
            try:
                await self._redis.publish(CHANNEL, message)
            except Exception:  # replicas fall back to the TTL
                log.warning(
                    "could not publish a key invalidation; other replicas rely on the %ss TTL", self._ttl
                )

    async def start(self, redis_url: str | None) -> None:
        if redis_url is None:
            return
        import redis.asyncio as redis

        self._redis = redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._listener = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        while True:
            try:
                pubsub = self._redis.pubsub()
                await pubsub.subscribe(CHANNEL)
                # Anything could have changed while we were not listening.
                self.drop_local()
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    kind, _, ident = message["data"].decode().partition(":")
                    self.drop_local(ident if kind == "key" else None, ident if kind == "team" else None)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep listening through Redis restarts
                await asyncio.sleep(1.0)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()


def now_utc() -> datetime:
    return datetime.now(UTC)


def period_since(period: str | None, now: datetime) -> date:
    today = now.astimezone(UTC).date()
    if period == "daily":
        return today
    if period == "weekly":
        return today - timedelta(days=today.weekday())
    if period == "monthly":
        return today.replace(day=1)
    return date(1970, 1, 1)


async def durable_spend(
    sessions: async_sessionmaker[AsyncSession], principal: Principal, now: datetime
) -> tuple[Decimal | None, Decimal | None]:
    """What the database already recorded this period for the team and the key (budget seeds)."""
    if principal.team_budget_usd is None and principal.key_budget_usd is None:
        return None, None
    async with sessions() as session:
        team = key = None
        if principal.team_budget_usd is not None:
            since = period_since(principal.team_budget_period, now)
            team = await period_spend(session, team_id=principal.team_id, since=since)
        if principal.key_budget_usd is not None:
            since = period_since(principal.key_budget_period, now)
            key = await period_spend(session, key_id=principal.key_id, since=since)
    return team, key
