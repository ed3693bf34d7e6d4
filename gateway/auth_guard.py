"""Failed authentications per client address: a token bucket each, in memory, per process.

Guessing a 256-bit key is hopeless; what a flood of bad keys does hurt is the key store, one lookup per
unknown key. Every attempt that needs a lookup takes a token from the caller's bucket first, and gets it
back when the key turns out good; a caller with none left is answered 429 before any lookup. Taking it
up front matters: fifty concurrent attempts must not all pass a check made before any of them failed.
The table of addresses is bounded (least recently seen go first); a full bucket is what an address we
never saw gets anyway, so forgetting one loses nothing but a penalty.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from gateway.errors import GatewayError


class FailedAuthLimiter:
    def __init__(
        self,
        per_minute: float = 60.0,
        burst: int = 20,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`per_minute` failures refill a bucket of `burst`; 0 turns the limiter off."""
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._max_clients = max_clients
        self._clock = clock
        # address -> (tokens, when they were counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, client: str, now: float) -> float:
        entry = self._buckets.get(client)
        if entry is None:
            return self._burst
        tokens, then = entry
        return min(self._burst, tokens + (now - then) * self._rate)

    def charge(self, client: str) -> None:
        """Count an attempt as failed before it is made; raise the 429 when `client` has none left."""
        if self._rate <= 0:
            return
        now = self._clock()
        tokens = self._tokens(client, now)
        if tokens >= 1.0:
            self._set(client, tokens - 1.0, now)
            return
        wait = math.ceil((1.0 - tokens) / self._rate)
        raise GatewayError(
            429,
            "too many failed authentication attempts from this address; retry later",
            type="rate_limit_error",
            code="auth_rate_limited",
            headers={"retry-after": str(max(1, wait))},
        )

    def refund(self, client: str) -> None:
        """The charged attempt succeeded after all."""
        if self._rate <= 0 or client not in self._buckets:
            return
        now = self._clock()
        tokens = self._tokens(client, now) + 1.0
        if tokens >= self._burst:
            del self._buckets[client]  # a full bucket is what an unknown address has anyway
        else:
            self._set(client, tokens, now)

    def _set(self, client: str, tokens: float, now: float) -> None:
        self._buckets[client] = (min(self._burst, tokens), now)
        self._buckets.move_to_end(client)
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
