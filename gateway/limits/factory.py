"""Build the limiter the settings ask for."""

from __future__ import annotations

import logging

from gateway.limits.failover import UNAVAILABLE, FailMode, FailoverLimiter
from gateway.limits.memory_limiter import MemoryLimiter
from gateway.limits.model import Limiter, Reseed
from gateway.limits.redis_limiter import RedisLimiter

log = logging.getLogger("switchyard.limits")


async def create_limiter(
    redis_url: str | None,
    mode: FailMode | str = "open",
    *,
    prefix: str = "sy:",
    cluster: bool = False,
    timeout_s: float = 0.1,
    window_s: float = 60.0,
    reservation_ttl_s: float = 600.0,
    probe_interval_s: float = 1.0,
    reseed: Reseed | None = None,
    reconcile_interval_s: float = 60.0,
) -> Limiter:
    """No URL: an in-process limiter (exact for one process only). Otherwise the Redis limiter with
    its scripts preloaded, behind the fail-open/closed wrapper. A Redis that is down at startup does
    not stop the gateway: the wrapper handles it as any outage and the scripts load on first use.

    `reseed` reads a budget's durable spend (see model.Reseed) whenever a limiter has no total for it,
    and the Redis limiter raises its totals to it every `reconcile_interval_s`. `cluster`: the URL names
    a Redis Cluster node (see RedisLimiter.from_url)."""
    if mode not in ("open", "closed"):
        raise ValueError(f"fail mode must be 'open' or 'closed', not {mode!r}")
    memory = MemoryLimiter(window_s=window_s, reservation_ttl_s=reservation_ttl_s, reseed=reseed)
    if not redis_url:
        return memory
    primary = RedisLimiter.from_url(
        redis_url,
        timeout_s=timeout_s,
        cluster=cluster,
        prefix=prefix,
        window_s=window_s,
        reservation_ttl_s=reservation_ttl_s,
        reseed=reseed,
        reconcile_interval_s=reconcile_interval_s,
    )
    try:
        await primary.load_scripts()
    except UNAVAILABLE as exc:
        log.warning("rate limiter: could not load scripts into Redis at startup (%s)", exc)
    primary.start()
    return FailoverLimiter(
        primary,
        memory if mode == "open" else None,
        mode,  # type: ignore[arg-type]
        probe_interval_s=probe_interval_s,
    )
