"""Rate limits and budgets that hold across gateway replicas: one Redis round trip in, one out.

Wiring, per request:
    limits = [LimitSpec(f"key:{key.id}", key.rpm, key.tpm), LimitSpec(f"team:{team.id}", team.rpm,
              team.tpm), LimitSpec(f"dep:{dep.id}", dep.rpm, dep.tpm)]
    budgets = [BudgetSpec.current(f"team:{team.id}", team.budget_usd, team.budget_period,
               seed_usd=<durable spend this period, if known>), ...same for the key]
    (create_limiter(..., reseed=...) reads a budget's durable spend whenever a limiter has no total
    for it; seed_usd is then only the fallback for a database that is down too)
    est_tokens = prompt_tokens + max_tokens        (what TPM is charged up front)
    reserve = worst_case_usd(prompt_tokens, max_tokens, price.input, price.output)
    least = worst_case_usd(prompt_tokens, 16, price.input, price.output)   (optional: see below)
    adm = await limiter.acquire(limits, budgets, est_tokens, reserve, request_id, least)
        (raises LimitInputError, a ValueError, for figures it cannot count: answer that request 400)
    if not adm.allowed: d = denial_error(adm) -> d.status, d.body(), d.headers
    with `least`, budgets hold as much of `reserve` as the tightest has room for, not less than
    `least`; cap the call's output to what that pays for:
        max_tokens = affordable_tokens(adm.reserved_nano, prompt_tokens, price.input, price.output)
    ... dispatch; add adm.headers() to the response ...
    finally (also on errors and client disconnects, once the response or stream has ended):
        limiter.settle_nowait(adm.ticket, actual_tokens, actual_cost_usd)   (off the path: Redis gets it
        with the next command written, or on the event loop's next pass)
    actual_cost_usd=None means "unknown": the reservation is charged; Decimal(0) for a failed call.
"""

from gateway.limits.errors import Denial, denial_error
from gateway.limits.factory import create_limiter
from gateway.limits.failover import FailoverLimiter
from gateway.limits.memory_limiter import MemoryLimiter
from gateway.limits.model import Admission, BudgetSpec, Limiter, LimitInputError, LimitSpec, Reseed, Ticket
from gateway.limits.money import (
    affordable_tokens,
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
    "LimitInputError",
    "LimitSpec",
    "Limiter",
    "MemoryLimiter",
    "RedisLimiter",
    "Reseed",
    "Ticket",
    "affordable_tokens",
    "create_limiter",
    "denial_error",
    "nano_to_usd",
    "period_end",
    "period_start",
    "usd_to_nano",
    "usd_to_nano_up",
    "worst_case_usd",
]
