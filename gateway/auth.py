"""Who is calling: the master key, a virtual key (`sk-sy-...`), or nobody (loopback-only servers).

Virtual keys are stored as SHA-256 hashes (they carry 256 bits of randomness, so a slow hash buys
nothing) and looked up by hash; the result is cached in memory with a TTL. An admin change publishes
on Redis so every replica drops its cached copy at once.

The cache must never outlive a revoke by more than a few seconds:
- a load that was reading the database when an invalidation arrived is not cached (a generation
  counter, bumped by every drop, tells), since what it read may predate the change;
- while this replica cannot hear invalidations (listener disconnected) or could not send one, entries
  live `degraded_ttl_s` instead of the full TTL, until the subscription is back (which drops them all).
Unknown keys are cached apart, shorter and in a smaller LRU, so a flood of random keys cannot evict
the live ones; both are bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import time
from collections import OrderedDict
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.auth_guard import FailedAuthLimiter
from gateway.auth_store import Principal, load_principal, now_utc
from gateway.errors import GatewayError
from gateway.pubsub import listen
from gateway.redis_client import connect
from gateway.settings import Settings

log = logging.getLogger("switchyard.auth")

KEY_PREFIX = "sk-sy-"
CHANNEL = "switchyard:auth:invalidate"
# secrets.token_urlsafe(32): 32 bytes in unpadded base64url, 43 characters.
_KEY_SHAPE = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]{43}")
# Past this many invalidations waiting for Redis, one "drop everything" stands for them all.
_MAX_UNPUBLISHED = 1000

MASTER = Principal("master")
ANONYMOUS = Principal("anonymous")


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def well_formed(key: str) -> bool:
    """True when `key` could be one generate_key made; anything else is refused before any lookup."""
    return _KEY_SHAPE.fullmatch(key) is not None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + 4]


class KeyCache:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        ttl_s: float = 60.0,
        negative_ttl_s: float = 5.0,
        *,
        degraded_ttl_s: float = 3.0,
        max_keys: int = 10_000,
        max_unknown: int = 1_000,
        failures: FailedAuthLimiter | None = None,
    ) -> None:
        self._sessions = sessions
        self._ttl = ttl_s
        self._negative_ttl = negative_ttl_s
        self._degraded_ttl = min(degraded_ttl_s, ttl_s)
        self._max_keys = max_keys
        self._max_unknown = max_unknown
        self.failures = failures if failures is not None else FailedAuthLimiter()
        # digest -> (loaded at, fresh until, principal); LRU order.
        self._live: OrderedDict[str, tuple[float, float, Principal]] = OrderedDict()
        # digest -> unknown until; LRU order.
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._generation = 0
        self._loading: dict[str, asyncio.Future[Principal | None]] = {}
        self._redis: Any = None
        self._listener: asyncio.Task[None] | None = None
        # Without Redis there is nothing to hear: the TTL is the whole story.
        self._hearing = True
        self._unpublished: set[str] = set()

    @classmethod
    def from_settings(cls, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> KeyCache:
        failures = FailedAuthLimiter(
            settings.auth_failures_per_minute,
            settings.auth_failures_burst,
            settings.auth_failures_max_clients,
        )
        return cls(
            sessions,
            settings.auth_cache_ttl_s,
            settings.auth_negative_ttl_s,
            degraded_ttl_s=settings.auth_cache_degraded_ttl_s,
            max_keys=settings.auth_cache_max_keys,
            max_unknown=settings.auth_negative_max_keys,
            failures=failures,
        )

    def __len__(self) -> int:
        return len(self._live) + len(self._unknown)

    @property
    def degraded(self) -> bool:
        """True while invalidations may be missed here or elsewhere: entries live `degraded_ttl_s`."""
        return not self._hearing or bool(self._unpublished)

    def cached(self, key: str) -> Principal | None:
        """The live principal for `key` when cached and fresh; None means "look it up" (no I/O here)."""
        digest = hash_key(key)
        hit = self._live.get(digest)
        if hit is None or not self._fresh(hit, time.monotonic()):
            return None
        self._live.move_to_end(digest)
        return hit[2]

    def _fresh(self, hit: tuple[float, float, Principal], now: float) -> bool:
        loaded_at, fresh_until, _ = hit
        return now < fresh_until and (not self.degraded or now - loaded_at < self._degraded_ttl)

    def loading(self, key: str) -> bool:
        """True while a lookup of `key` is reading the database: another lookup now just joins it."""
        return hash_key(key) in self._loading

    async def lookup(self, key: str) -> Principal | None:
        return await self.lookup_digest(hash_key(key))

    async def lookup_digest(self, digest: str) -> Principal | None:
        """`lookup` by the key's SHA-256 (hex): for holders of the digest only, such as a dashboard
        session, which re-checks its key on every request without keeping the key itself."""
        now = time.monotonic()
        hit = self._live.get(digest)
        if hit is not None and self._fresh(hit, now):
            self._live.move_to_end(digest)
            return hit[2]
        unknown_until = self._unknown.get(digest)
        if unknown_until is not None and now < unknown_until:
            return None
        # One read a key at a time: a burst of requests with a key not cached yet costs one lookup.
        # Shielded, so a caller that goes away does not fail the others waiting on the same read.
        load = self._loading.get(digest)
        if load is None:
            load = self._loading[digest] = asyncio.ensure_future(self._load(digest, hit, now))
            load.add_done_callback(lambda _: self._loading.pop(digest, None))
        return await asyncio.shield(load)

    async def _load(
        self, digest: str, hit: tuple[float, float, Principal] | None, now: float
    ) -> Principal | None:
        # Twice at most: a read that overlapped an invalidation is done again, and a second overlap
        # (invalidations arriving back to back) is answered from that later read but not cached.
        for _ in range(2):
            generation = self._generation
            try:
                principal = await load_principal(self._sessions, digest, now_utc())
            except (OSError, SQLAlchemyError, TimeoutError):
                return self._unreachable(digest, hit, now)
            if generation == self._generation:
                self._store(digest, principal, time.monotonic())
                break
        return principal

    def _unreachable(self, digest: str, hit: tuple[float, float, Principal] | None, now: float) -> Principal:
        if hit is not None and self._live.get(digest) is hit:
            # The database is down: keep honouring what we knew, and look again shortly.
            self._live[digest] = (now, now + self._negative_ttl, hit[2])
            return hit[2]
        log.warning("key lookup failed: the database is unreachable")
        raise GatewayError(
            503,
            "the key store is unreachable; retry shortly",
            type="service_unavailable_error",
            code="auth_store_unavailable",
            headers={"retry-after": "1"},
        )

    def _store(self, digest: str, principal: Principal | None, now: float) -> None:
        if principal is None:
            self._live.pop(digest, None)
            self._unknown[digest] = now + self._negative_ttl
            self._unknown.move_to_end(digest)
            while len(self._unknown) > self._max_unknown:
                self._unknown.popitem(last=False)
            return
        self._unknown.pop(digest, None)
        self._live[digest] = (now, now + self._ttl, principal)
        self._live.move_to_end(digest)
        while len(self._live) > self._max_keys:
            self._live.popitem(last=False)

    def drop_local(self, key_id: str | None = None, team_id: str | None = None) -> None:
        self._generation += 1
        self._unknown.clear()
        if key_id is None and team_id is None:
            self._live.clear()
            return
        for digest, (_, _, p) in list(self._live.items()):
            if (key_id and p.key_id == key_id) or (team_id and p.team_id == team_id):
                del self._live[digest]

    async def invalidate(self, key_id: str | None = None, team_id: str | None = None) -> None:
        """Drop cached entries here and, through Redis, on every other replica."""
        self.drop_local(key_id, team_id)
        if self._redis is None:
            return
        message = f"key:{key_id}" if key_id else f"team:{team_id}" if team_id else "all"
        try:
            await self._redis.publish(CHANNEL, message)
        except Exception:
            # Sent again once Redis answers; until then entries everywhere here live the short TTL.
            if len(self._unpublished) >= _MAX_UNPUBLISHED:
                self._unpublished = {"all"}
            else:
                self._unpublished.add(message)
            log.warning(
                "could not publish a key invalidation; retrying it, and caching keys %ss meanwhile",
                self._degraded_ttl,
            )

    async def start(self, redis_url: str | None, *, cluster: bool = False) -> None:
        """`cluster`: the URL names a Redis Cluster node (gateway/redis_client.py)."""
        if redis_url is None:
            return
        self._hearing = False
        self._redis = connect(redis_url, cluster=cluster, timeout_s=1.0)
        self._listener = asyncio.create_task(
            listen(
                self._redis,
                CHANNEL,
                on_message=self._heard,
                on_subscribed=self._subscribed,
                on_lost=self._lost,
                # Invalidations that could not be sent go out once Redis answers.
                on_idle=self._republish,
            )
        )

    async def _subscribed(self) -> None:
        # Anything could have changed while we were not listening.
        self.drop_local()
        await self._republish()
        self._hearing = True

    def _heard(self, data: bytes) -> None:
        kind, _, ident = data.decode().partition(":")
        self.drop_local(ident if kind == "key" else None, ident if kind == "team" else None)

    def _lost(self, exc: Exception) -> None:
        if self._hearing:
            log.warning("invalidations lost (%s); caching keys %ss", exc, self._degraded_ttl)
        self._hearing = False

    async def _republish(self) -> None:
        for message in sorted(self._unpublished):
            await self._redis.publish(CHANNEL, message)
            self._unpublished.discard(message)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
