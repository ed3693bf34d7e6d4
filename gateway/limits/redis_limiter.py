"""The shared limiter: one EVALSHA in on the way in, one on the way out, whatever the number of subjects."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal

from redis.exceptions import NoScriptError, RedisError, ResponseError

from gateway.limits.background import Background
from gateway.limits.cluster import ClusterConnection
from gateway.limits.model import (
    MAX_REQUEST_TOKENS,
    Admission,
    BudgetSpec,
    LimitInputError,
    LimitSpec,
    Reseed,
    Ticket,
    active_limits,
    admission_from,
    bounded,
    least_nano,
    settled_figures,
    usd_nano,
)
from gateway.limits.money import (
    nano_to_usd,
    period_end,
    period_expire_at,
    usd_to_nano,
)
from gateway.limits.reconcile import Reconciler, Seeder
from gateway.limits.resp import RespConnection, refusal
from gateway.limits.scripts import ACQUIRE, RAISE_SPENT, SETTLE

log = logging.getLogger("switchyard.limits")


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


def _pack(args: list[object]) -> str:
    """The scripts take their arguments as one space-separated string (see scripts.py)."""
    return " ".join(map(str, args))


class RedisLimiter:
    origin = "redis"

    def __init__(
        self,
        client: RespConnection | ClusterConnection,
        *,
        prefix: str = "sy:",
        window_s: float = 60.0,
        reservation_ttl_s: float = 600.0,
        orphan_release_s: float = 1.0,
        reseed: Reseed | None = None,
        reseed_timeout_s: float = 2.0,
        reconcile_interval_s: float = 60.0,
    ) -> None:
        """`reseed`: where a budget whose total Redis lost reads the durable spend (see model.Reseed);
        without it a budget starts from its BudgetSpec.seed_usd. With it, budgets are also reconciled
        against it every `reconcile_interval_s` (0: never)."""
        self.client = client
        self.overlappable = client.ordered_replies
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
        self._raise_sha = _sha(RAISE_SPENT)
        self.seeder = Seeder(reseed, reseed_timeout_s) if reseed is not None else None
        self.reconciler = (
            Reconciler(reseed, self.raise_spent, reconcile_interval_s) if reseed is not None else None
        )

    @classmethod
    def from_url(
        cls, url: str, *, timeout_s: float = 0.1, cluster: bool = False, prefix: str = "sy:", **kwargs: object
    ) -> RedisLimiter:
        """A Redis that is slow or gone must cost a request `timeout_s`, not seconds: the failover
        wrapper answers it better than a retry would.

        `cluster`: the URL names a Redis Cluster node. The prefix then becomes a hash tag (`sy:` ->
        `{sy}:`), so every key a script touches maps to one slot and the script stays atomic."""
        if cluster:
            tagged = "{" + prefix.rstrip(":") + "}:"
            return cls(ClusterConnection(url, timeout_s), prefix=tagged, **kwargs)  # type: ignore[arg-type]
        return cls(RespConnection(url, timeout_s), prefix=prefix, **kwargs)  # type: ignore[arg-type]

    async def load_scripts(self) -> None:
        """Preload both scripts at startup so the request path only ever sends EVALSHA."""
        self._acquire_sha = await self.client.script_load(ACQUIRE)
        self._settle_sha = await self.client.script_load(SETTLE)
        self._raise_sha = await self.client.script_load(RAISE_SPENT)

    def start(self) -> None:
        """Start the background reconciliation (needs a running event loop)."""
        if self.reconciler is not None:
            self.reconciler.start()

    async def _eval(self, sha: str, script: str, keys: list[str], *args: object) -> object:
        try:
            try:
                return await self.client.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:
                # Redis restarted or was flushed since load_scripts: reload once, carry on.
                await self.client.script_load(script)
                return await self.client.evalsha(sha, len(keys), *keys, *args)
        except ResponseError as exc:
            if (err := refusal(exc)) is not None:
                raise err from exc
            raise

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
                rpm = -1 if s.rpm is None else bounded("rpm", s.rpm, subject=s.subject)
                args += (rpm, -1 if s.tpm is None else bounded("tpm", s.tpm, subject=s.subject))
            hit = self._windows[spec_set] = (keys, _pack(args), tuple(s.subject for s in spec_set))
        return hit

    def _budget_keys(self, subject: str, start: str) -> tuple[str, str]:
        return f"{self.prefix}b:{subject}:{start}", f"{self.prefix}r:{subject}:{start}"

    def _seed_arg(self, b: BudgetSpec) -> object:
        if self.seeder is not None:
            return "?"
        return "-" if b.seed_usd is None else usd_nano("seed", b.seed_usd, subject=b.subject)

    async def acquire(
        self,
        limits: Sequence[LimitSpec],
        budgets: Sequence[BudgetSpec],
        est_tokens: int,
        reserve_usd: Decimal,
        request_id: str,
        least_usd: Decimal | None = None,
    ) -> Admission:
        limits = active_limits(limits)
        if not limits and not budgets:
            return Admission(True)
        bounded("est_tokens", est_tokens, MAX_REQUEST_TOKENS)
        reserve_nano = usd_nano("reservation", reserve_usd, up=True)
        least = least_nano(least_usd, reserve_nano)
        window_keys, window_args, subjects = self._window_part(limits)
        member = f"{self._nonce}.{next(self._seq)}"
        keys = list(window_keys)
        head = _pack([member, est_tokens, reserve_nano, least, self._ttl_ms, self._window_ms, window_args])
        parts: list[list[object]] = []
        for b in budgets:
            keys.extend(self._budget_keys(b.subject, b.period_start))
            end_s, expire_at = self._period(b.period_start)
            parts.append(
                [usd_nano("budget", b.limit_usd, subject=b.subject), end_s, expire_at, self._seed_arg(b)]
            )
        if budgets and self.reconciler is not None:
            self.reconciler.saw(budgets)
        ticket = Ticket(member, request_id, est_tokens, reserve_nano, subjects, tuple(budgets), self.origin)
        try:
            for _ in range(3):
                arg = f"{head} {len(budgets)} " + " ".join(_pack(p) for p in parts)
                raw: bytes = await self._eval(self._acquire_sha, ACQUIRE, keys, arg)  # type: ignore[assignment]
                if not raw.startswith(b"4 "):
                    break
                # Redis has no total for these budgets (restarted, flushed, evicted): count from the
                # durable spend, then ask again. Nothing was written by the refused call.
                missing = [int(j) - 1 for j in raw.split()[4:]]
                assert self.seeder is not None
                seeds = await asyncio.gather(*(self.seeder.nano(budgets[j]) for j in missing))
                for j, nano in zip(missing, seeds, strict=True):
                    parts[j][3] = nano
            else:
                raise LimitInputError("the rate limiter kept losing this request's budget totals")
        except asyncio.CancelledError:
            self._release_later(ticket)
            raise
        res = raw.split()
        status, index, retry_ms, held = int(res[0]), int(res[1]), int(res[2]), int(res[4])
        n = len(limits)
        windows = [(int(res[5 + 3 * i]), int(res[6 + 3 * i]), int(res[7 + 3 * i]) / 1000) for i in range(n)]
        base = 5 + 3 * n
        use = [(int(res[base + 2 * j]), int(res[base + 2 * j + 1])) for j in range(len(budgets))]
        retry_s = -1.0 if retry_ms < 0 else retry_ms / 1000
        if status == 0 and held != reserve_nano:
            ticket = replace(ticket, reserve_nano=held)
        return admission_from(limits, budgets, status, index, retry_s, windows, use, est_tokens, held, ticket)

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
            exc = refusal(exc) or exc
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
        except (RedisError, OSError, LimitInputError) as exc:
            if on_error is None:
                raise
            on_error(exc)

    def _settle_args(
        self, ticket: Ticket, actual_tokens: int, actual_cost_usd: Decimal | None
    ) -> tuple[list[str], str] | None:
        tokens, cost = settled_figures(ticket, actual_tokens, actual_cost_usd)
        delta = tokens - ticket.est_tokens
        windows = ticket.window_subjects if delta else ()
        if not windows and not ticket.budgets:
            return None
        keys = [f"{self.prefix}t:{s}" for s in windows]
        args: list[object] = [
            ticket.member,
            delta,
            len(windows),
            len(ticket.budgets),
            cost,
            ticket.reserve_nano,
        ]
        for b in ticket.budgets:
            keys.extend(self._budget_keys(b.subject, b.period_start))
            args.append(self._period(b.period_start)[1])
            args.append(self._seed_arg(b))
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

    async def raise_spent(self, subject: str, period_start: str, floor_usd: Decimal) -> Decimal:
        """Raise the budget's `spent` to at least `floor_usd` (never lower it); returns the total."""
        key, _ = self._budget_keys(subject, period_start)
        floor = usd_nano("durable spend", floor_usd, subject=subject)
        raw = await self._eval(self._raise_sha, RAISE_SPENT, [key], floor, period_expire_at(period_start))
        return nano_to_usd(int(raw))  # type: ignore[call-overload]

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
        if self.reconciler is not None:
            await self.reconciler.aclose()
        await self.client.drain()  # replies to queued settlements may still spawn retries
        await self._background.drain()
        await self.client.aclose()
