"""The shared limiter: one EVALSHA in on the way in, one on the way out, whatever the number of subjects."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import secrets
from collections.abc import Callable, Sequence
from decimal import Decimal

from redis.exceptions import NoScriptError, RedisError

from gateway.limits.background import Background
from gateway.limits.model import (
    Admission,
    BudgetSpec,
    LimitSpec,
    Ticket,
    active_limits,
    admission_from,
)
from gateway.limits.money import (
    nano_to_usd,
    period_end,
    period_expire_at,
    usd_to_nano,
    usd_to_nano_up,
)
from gateway.limits.resp import RespConnection
from gateway.limits.scripts import ACQUIRE, SETTLE

log = logging.getLogger("switchyard.limits")


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


def _pack(args: list[object]) -> str:
    """The scripts take their arguments as one space-separated string (see scripts.py)."""
    return " ".join(map(str, args))


class RedisLimiter:
    origin = "redis"
    round_trip = True

    def __init__(
        self,
        client: RespConnection,
        *,
        prefix: str = "sy:",
        window_s: float = 60.0,
        reservation_ttl_s: float = 600.0,
        orphan_release_s: float = 1.0,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self._window_ms = round(window_s * 1000)
        # Long enough for the slowest stream; a reservation outliving it is released early, never leaked.
        self._ttl_ms = round(reservation_ttl_s * 1000)
        self._nonce = secrets.token_hex(5)
        self._seq = itertools.count()
        self._acquire_sha = _sha(ACQUIRE)
        self._settle_sha = _sha(SETTLE)
        self._periods: dict[str, tuple[int, int]] = {}
        self._windows: dict[tuple[LimitSpec, ...], tuple[tuple[str, ...], str, tuple[str, ...]]] = {}
        self._orphan_release_s = orphan_release_s
        self._background = Background()

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 0.1, **kwargs: object) -> RedisLimiter:
        """A Redis that is slow or gone must cost a request `timeout_s`, not seconds: the failover
        wrapper answers it better than a retry would."""
        return cls(RespConnection(url, timeout_s), **kwargs)  # type: ignore[arg-type]

    async def load_scripts(self) -> None:
        """Preload both scripts at startup so the request path only ever sends EVALSHA."""
        self._acquire_sha = await self.client.script_load(ACQUIRE)
        self._settle_sha = await self.client.script_load(SETTLE)

    async def _eval(self, sha: str, script: str, keys: list[str], arg: str) -> object:
        try:
            return await self.client.evalsha(sha, len(keys), *keys, arg)
        except NoScriptError:
            # Redis restarted or was flushed since load_scripts: reload once, carry on.
            await self.client.script_load(script)
            return await self.client.evalsha(sha, len(keys), *keys, arg)

    def _period(self, start: str) -> tuple[int, int]:
        """(period end, key expiry) in unix seconds, 0 for never; parsed once per period, not per call."""
        hit = self._periods.get(start)
        if hit is None:
            if len(self._periods) > 256:
                self._periods.clear()
            end = period_end(start)
            hit = self._periods[start] = (0 if end is None else int(end.timestamp()), period_expire_at(start))
        return hit

    def _window_part(self, limits: Sequence[LimitSpec]) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
        """(keys, argument text, subjects) for a set of windows. A key's requests ask for the same few
        sets again and again, so each is formatted once."""
        spec_set = tuple(limits)
        hit = self._windows.get(spec_set)
        if hit is None:
            if len(self._windows) > 4096:
                self._windows.clear()
            p = self.prefix
            keys = tuple(k for s in spec_set for k in (f"{p}w:{s.subject}", f"{p}t:{s.subject}"))
            args = [len(spec_set)]
            for s in spec_set:
                args += (-1 if s.rpm is None else s.rpm, -1 if s.tpm is None else s.tpm)
            hit = self._windows[spec_set] = (keys, _pack(args), tuple(s.subject for s in spec_set))
        return hit

    def _budget_keys(self, subject: str, start: str) -> tuple[str, str]:
        return f"{self.prefix}b:{subject}:{start}", f"{self.prefix}r:{subject}:{start}"

    async def acquire(
        self,
        limits: Sequence[LimitSpec],
        budgets: Sequence[BudgetSpec],
        est_tokens: int,
        reserve_usd: Decimal,
        request_id: str,
    ) -> Admission:
        limits = active_limits(limits)
        if not limits and not budgets:
            return Admission(True)
        member = f"{self._nonce}.{next(self._seq)}"
        reserve_nano = usd_to_nano_up(reserve_usd) if reserve_usd > 0 else 0
        window_keys, window_args, subjects = self._window_part(limits)
        keys = list(window_keys)
        args: list[object] = [
            member,
            est_tokens,
            reserve_nano,
            self._ttl_ms,
            self._window_ms,
            window_args,
            len(budgets),
        ]
        for b in budgets:
            keys.extend(self._budget_keys(b.subject, b.period_start))
            end_s, expire_at = self._period(b.period_start)
            args.append(usd_to_nano(b.limit_usd))
            args.append(end_s)
            args.append(expire_at)
            args.append("-" if b.seed_usd is None else usd_to_nano(b.seed_usd))
        ticket = Ticket(member, request_id, est_tokens, reserve_nano, subjects, tuple(budgets), self.origin)
        try:
            raw = await self._eval(self._acquire_sha, ACQUIRE, keys, _pack(args))
        except asyncio.CancelledError:
            self._release_later(ticket)
            raise
        res = raw.split()  # type: ignore[attr-defined]
        status, index, retry_ms = int(res[0]), int(res[1]), int(res[2])
        n = len(limits)
        windows = [(int(res[4 + 3 * i]), int(res[5 + 3 * i]), int(res[6 + 3 * i]) / 1000) for i in range(n)]
        base = 4 + 3 * n
        use = [(int(res[base + 2 * j]), int(res[base + 2 * j + 1])) for j in range(len(budgets))]
        retry_s = -1.0 if retry_ms < 0 else retry_ms / 1000
        return admission_from(
            limits, budgets, status, index, retry_s, windows, use, est_tokens, reserve_nano, ticket
        )

    def _release_later(self, ticket: Ticket) -> None:
        """The caller was cancelled mid-acquire: the script may still have run and reserved. Settling
        the ticket at zero cost is a no-op if it did not; the delay lets a command already on the wire
        run first, so the release cannot overtake it."""
        asyncio.get_running_loop().call_later(
            self._orphan_release_s, lambda: self._background.spawn(self._release(ticket))
        )

    async def _release(self, ticket: Ticket) -> None:
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await self.settle(ticket, 0, Decimal(0))

    def settle_nowait(
        self,
        ticket: Ticket,
        actual_tokens: int,
        actual_cost_usd: Decimal | None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """`settle` off the request path and without a task: the command leaves with the next one
        written to Redis, or on the event loop's next pass. `on_error` hears of a failure."""
        parts = self._settle_args(ticket, actual_tokens, actual_cost_usd)
        if parts is None:
            return
        keys, arg = parts

        def done(fut: asyncio.Future[object]) -> None:
            if fut.cancelled() or (exc := fut.exception()) is None:
                return
            if isinstance(exc, NoScriptError):  # Redis lost its scripts: the awaited path reloads
                self._background.spawn(self._settle_again(keys, arg, on_error))
            elif on_error is not None:
                on_error(exc)
            else:
                log.warning("rate limiter: settlement failed (%s: %s)", type(exc).__name__, exc)

        self.client.send_soon(("EVALSHA", self._settle_sha, len(keys), *keys, arg), done)

    async def _settle_again(
        self, keys: list[str], arg: str, on_error: Callable[[BaseException], None] | None
    ) -> None:
        try:
            await self._eval(self._settle_sha, SETTLE, keys, arg)
        except (RedisError, OSError) as exc:
            if on_error is None:
                raise
            on_error(exc)

    def _settle_args(
        self, ticket: Ticket, actual_tokens: int, actual_cost_usd: Decimal | None
    ) -> tuple[list[str], str] | None:
        delta = actual_tokens - ticket.est_tokens
        windows = ticket.window_subjects if delta else ()
        if not windows and not ticket.budgets:
            return None
        keys = [f"{self.prefix}t:{s}" for s in windows]
        args: list[object] = [
            ticket.member,
            delta,
            len(windows),
            len(ticket.budgets),
            "-" if actual_cost_usd is None else usd_to_nano(actual_cost_usd),
            ticket.reserve_nano,
        ]
        for b in ticket.budgets:
            keys.extend(self._budget_keys(b.subject, b.period_start))
            args.append(self._period(b.period_start)[1])
            args.append("-" if b.seed_usd is None else usd_to_nano(b.seed_usd))
        return keys, _pack(args)

    async def settle(self, ticket: Ticket, actual_tokens: int, actual_cost_usd: Decimal | None) -> None:
        parts = self._settle_args(ticket, actual_tokens, actual_cost_usd)
        if parts is not None:
            await self._eval(self._settle_sha, SETTLE, *parts)

    async def seed_budget(self, subject: str, period_start: str, spent_usd: Decimal) -> None:
        key, _ = self._budget_keys(subject, period_start)
        expire_at = period_expire_at(period_start)
        await self.client.execute("HSETNX", key, "spent", usd_to_nano(spent_usd))
        if expire_at:
            await self.client.execute("EXPIREAT", key, expire_at)

    async def spent(self, subject: str, period_start: str) -> Decimal:
        key, _ = self._budget_keys(subject, period_start)
        raw = await self.client.execute("HGET", key, "spent")
        return nano_to_usd(int(raw)) if raw is not None else Decimal(0)

    async def held(self, subject: str, period_start: str) -> Decimal:
        """Outstanding reservations (including any that expired but no request has dropped yet)."""
        key, _ = self._budget_keys(subject, period_start)
        raw = await self.client.execute("HGET", key, "held")
        return nano_to_usd(int(raw)) if raw is not None else Decimal(0)

    async def aclose(self) -> None:
        await self.client.drain()  # replies to queued settlements may still spawn retries
        await self._background.drain()
        await self.client.aclose()
