"""What /health/ready answers: each dependency's state, probed in the background so asking is free.

One task probes every `health_probe_interval_s`: PostgreSQL (SELECT 1 on a one-connection engine of
its own; the schema check instead while that is still owed, after a start during an outage), Redis
(PING on a client of its own) and the spool directory (writable, not full). The route reads what the
last round found, so a dead database never makes a load balancer's probe wait, and the request path
does no extra work. While the database does not answer, its probe backs off up to
`_DB_BACKOFF_MAX_S`: replicas should not hammer a server that is coming back.

Status policy (README, "Health"): the code says whether this process can serve requests now.
  ready      200  every dependency answers
  degraded   200  it serves, with less: the database is down but the spool is writable (records wait
                  there; keys not cached yet answer 503 auth_store_unavailable); Redis is down with
                  limits_fail_mode=open (per-process limits); the spool is not writable while the
                  database takes records
  not_ready  503  it cannot: no models; a local model still loading (at start-up, seconds) or
                  failed to load; the database answers with an out-of-date schema; Redis is down
                  with limits_fail_mode=closed (limited requests are refused); the database is down
                  and the spool is not writable (records would be lost)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.engine import make_engine
from gateway.db.migrate import SchemaNotCurrentError, require_current
from gateway.redis_client import connect
from gateway.settings import Settings

log = logging.getLogger("switchyard.health")

_DB_BACKOFF_MAX_S = 5.0
# Below this much free space a spill (an fsync'd batch of records) may no longer fit.
_MIN_FREE_BYTES = 16 * 1024 * 1024


@dataclass
class Check:
    state: str
    detail: dict[str, Any] = field(default_factory=dict)
    checked_at: float | None = None  # time.monotonic() of the probe that found `state`

    def view(self, now: float) -> dict[str, Any]:
        age = None if self.checked_at is None else round(now - self.checked_at, 2)
        return {"state": self.state, **self.detail, "checked_s_ago": age}


@runtime_checkable
class LoadsModel(Protocol):
    """A provider that must load before it serves (the local engine)."""

    def start_loading(self) -> None: ...

    def load_state(self) -> dict[str, Any]:
        """{"state": "ok" | "loading" | "failed" | "not_started", ...details}"""
        ...


def verdict(models: str, database: str, redis: str, spool: str, fail_mode: str) -> str:
    """ready / degraded / not_ready, by the policy in the module docstring; `models` is the state of
    `checks.models`: ok, none, loading or failed."""
    if models != "ok" or database == "schema_outdated":
        return "not_ready"
    if redis == "down" and fail_mode == "closed":
        return "not_ready"
    if database != "ok" and spool != "ok":
        return "not_ready"
    if database != "ok" or redis == "down" or spool != "ok":
        return "degraded"
    return "ready"


class Readiness:
    def __init__(
        self,
        settings: Settings,
        providers: Callable[[], Mapping[str, object]],
        backlog: Callable[[], dict[str, int]],
        config_version: Callable[[], int] | None = None,
    ) -> None:
        """`providers`: by deployment id, the providers of the running config (those that load
        before they serve are reported on); `backlog`: the spend writer's stats (records buffered in
        memory and spooled on disk); `config_version`: the config version this process runs."""
        self._settings = settings
        self._providers = providers
        self._backlog = backlog
        self._config_version = config_version
        self._interval = settings.health_probe_interval_s
        self._timeout = settings.health_probe_timeout_s
        self._engine: AsyncEngine | None = None
        self._redis: Any = None
        self._task: asyncio.Task[None] | None = None
        self._schema_ok = False
        self._db_delay = self._interval
        self._db_next = 0.0
        self.database = Check("unknown")
        self.redis = Check("disabled" if settings.redis_url is None else "unknown")
        self.spool = Check("unknown")

    async def start(self, schema_checked: bool) -> None:
        """Probe once (so the first answer is already true), then keep probing in the background.

        `schema_checked`: False when the start-up schema check could not reach the database; the
        database probe runs that check until it passes.
        """
        self._schema_ok = schema_checked
        t = self._timeout
        self._engine = make_engine(
            self._settings.database_url, pool_size=1, connect_timeout=t, command_timeout=t
        )
        if self._settings.redis_url is not None:
            self._redis = connect(self._settings.redis_url, cluster=self._settings.redis_cluster, timeout_s=t)
        await self._round()
        self._task = asyncio.create_task(self._loop(), name="readiness-probe")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
        if self._engine is not None:
            await self._engine.dispose()

    def report(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for /health/ready, from the last probe round; no I/O."""
        now = time.monotonic()
        fail_mode = self._settings.limits_fail_mode
        models = self._models_check()
        status = verdict(models["state"], self.database.state, self.redis.state, self.spool.state, fail_mode)
        redis = self.redis.view(now)
        if self.redis.state != "disabled":
            redis["fail_mode"] = fail_mode
        backlog = self._backlog()
        spool = {**self.spool.view(now), **{k: backlog.get(k, 0) for k in ("buffered", "spooled")}}
        body: dict[str, Any] = {"status": status}
        if self._config_version is not None:
            body["config_version"] = self._config_version()
        body["checks"] = {
            "models": models,
            "database": self.database.view(now),
            "redis": redis,
            "spool": spool,
        }
        return (503 if status == "not_ready" else 200), body

    def _models_check(self) -> dict[str, Any]:
        providers = self._providers()
        check: dict[str, Any] = {"state": "ok" if providers else "none", "count": len(providers)}
        loading = {dep_id: p for dep_id, p in providers.items() if isinstance(p, LoadsModel)}
        if loading:
            local = {dep_id: provider.load_state() for dep_id, provider in loading.items()}
            states = {view["state"] for view in local.values()}
            if "failed" in states:
                check["state"] = "failed"
            elif states != {"ok"}:
                check["state"] = "loading"
            check["local"] = local
        return check

    # -- probing ----------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._round()
            except Exception:  # a bug here must not freeze readiness at its last answer
                log.exception("readiness probe failed")

    async def _round(self) -> None:
        probes = [self._probe_spool()]
        if self._redis is not None:
            probes.append(self._probe_redis())
        if time.monotonic() >= self._db_next:
            probes.append(self._probe_database())
        await asyncio.gather(*probes)

    async def _probe_database(self) -> None:
        # Connect and query are each bounded by the engine's timeouts; this bounds the pair.
        try:
            # asyncio.timeout rather than wait_for, which on 3.11 can lose the cancel that stops the loop.
            async with asyncio.timeout(2 * self._timeout):
                schema_checked = await self._query_database()
        except SchemaNotCurrentError as exc:
            if self.database.state != "schema_outdated":
                log.error("%s; not ready until it is migrated", exc)
            self._set_database("schema_outdated", {})
        except Exception as exc:
            # From "unknown", the start-up check has said it already.
            if self.database.state not in ("down", "unknown"):
                log.warning("readiness: database unreachable (%s)", type(exc).__name__)
            self._set_database("down", {"error": type(exc).__name__})
        else:
            if schema_checked:
                log.warning("readiness: the database answers and its schema is current")
            elif self.database.state not in ("ok", "unknown"):
                log.warning("readiness: database answers again")
            self._set_database("ok", {})
            self._db_delay = self._interval
            return
        self._db_delay = min(self._db_delay * 2, max(_DB_BACKOFF_MAX_S, self._interval))

    async def _query_database(self) -> bool:
        """SELECT 1, or the schema check while it is owed; True when that check just passed."""
        assert self._engine is not None
        if not self._schema_ok:
            await require_current(self._engine, self._settings.database_url)
            self._schema_ok = True
            return True
        async with self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return False

    def _set_database(self, state: str, detail: dict[str, Any]) -> None:
        now = time.monotonic()
        self.database = Check(state, detail, now)
        self._db_next = now + (self._db_delay if state != "ok" else 0.0)

    async def _probe_redis(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.ping()
        except Exception as exc:
            self.redis = Check("down", {"error": type(exc).__name__}, time.monotonic())
            return
        self.redis = Check("ok", {}, time.monotonic())

    async def _probe_spool(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                state = await asyncio.to_thread(spool_state, self._settings.spool_dir)
        except (OSError, TimeoutError) as exc:
            self.spool = Check("not_writable", {"error": type(exc).__name__}, time.monotonic())
            return
        self.spool = Check(state, {}, time.monotonic())


def spool_state(directory: Path) -> str:
    """ok, not_writable or full: could a spill land in `directory` (created on first spill) now?"""
    existing = directory.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return "not_writable"
    st = os.statvfs(existing)
    return "ok" if st.f_bavail * st.f_frsize >= _MIN_FREE_BYTES else "full"
