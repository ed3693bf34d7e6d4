"""Rate limits and budgets that hold across gateway replicas: one Redis round trip in, one out.

Wiring, per request:
    adm = await limiter.acquire(limits, budgets, est_tokens, reserve_usd, request_id)
    if not adm.allowed: d = denial_error(adm) -> d.status, d.body(), d.headers
    ... dispatch; add adm.headers() to the response ...
    asyncio.create_task(limiter.settle(adm.ticket, actual_tokens, actual_cost_usd))
"""

from gateway.limits.errors import Denial, denial_error
from gateway.limits.factory import create_limiter
from gateway.limits.failover import FailoverLimiter
from gateway.limits.memory_limiter import MemoryLimiter
from gateway.limits.model import Admission, BudgetSpec, Limiter, LimitSpec, Ticket
from gateway.limits.money import (
    nano_to_usd,
    period_end,
    period_start,
    usd_to_nano,
    usd_to_nano_up,
    worst_case_usd,
)
from gateway.limits.redis_limiter import RedisLimiter

__all__ = [
    "Admission",
    "BudgetSpec",
    "Denial",
    "FailoverLimiter",
    "LimitSpec",
    "Limiter",
    "MemoryLimiter",
    "RedisLimiter",
    "Ticket",
    "create_limiter",
    "denial_error",
    "nano_to_usd",
    "period_end",
    "period_start",
    "usd_to_nano",
    "usd_to_nano_up",
    "worst_case_usd",
]
