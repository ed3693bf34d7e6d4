"""Which deployment serves a call, and what happens when it fails.

For each candidate name in order, each of its deployments (rotated, cooled-down ones last): one
attempt plus `retries` more on retryable failures (connect error, 429, 5xx) with exponential backoff
(honouring Retry-After up to the cap). A timeout or an auth/not-found answer moves straight on to the
next deployment; any other 4xx is the client's own error and ends the call. A deployment failing
`cooldown_failures` calls in a row sits out `cooldown_s`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from gateway.settings import Settings
from providers.base import Provider, UpstreamError
from providers.deployment import Deployment
from routing.capabilities import Need, served_by

log = logging.getLogger("switchyard.dispatch")
T = TypeVar("T")

# Statuses that say "this deployment cannot serve it" rather than "this request is wrong".
_MOVE_ON = {401, 403, 404, 408}


class Skip(Exception):
    """Raised by `invoke` when this deployment may not serve the call (e.g. what the call's budget
    holds cannot pay for its answer there): the next one is tried, no failure is counted against
    it, and `error` is what the caller gets when this was the last thing to go wrong."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(slots=True)
class _Health:
    failures: int = 0
    cooldown_until: float = 0.0


@dataclass(slots=True)
class Served(Generic[T]):
    result: T
    deployment: Deployment
    attempts: int
    # How many other deployments failed before this one answered.
    fallbacks: int


class Dispatcher:
    def __init__(self, providers: dict[str, Provider], deployments: list[Deployment], settings: Settings):
        self.providers = providers
        self._by_name: dict[str, list[Deployment]] = {}
        for dep in deployments:
            self._by_name.setdefault(dep.name, []).append(dep)
        self._health = {dep.id: _Health() for dep in deployments}
        self._turn: dict[str, int] = dict.fromkeys(self._by_name, 0)
        self._settings = settings

    def share_health(self, previous: Dispatcher) -> None:
        """Failure counts and cooldowns of the deployments whose provider a config change kept:
        one record, updated by the requests of both configs."""
        for dep_id, provider in self.providers.items():
            if previous.providers.get(dep_id) is provider and dep_id in previous._health:
                self._health[dep_id] = previous._health[dep_id]

    def deployments(self, name: str) -> list[Deployment]:
        return self._by_name.get(name, [])

    def healthy(self, dep: Deployment) -> bool:
        return self._health[dep.id].cooldown_until <= time.monotonic()

    def _order(self, name: str) -> list[Deployment]:
        deps = self._by_name.get(name, [])
        if len(deps) > 1:
            turn = self._turn[name]
            self._turn[name] = (turn + 1) % len(deps)
            deps = deps[turn:] + deps[:turn]
            now = time.monotonic()
            deps = sorted(deps, key=lambda d: self._health[d.id].cooldown_until > now)
        return deps

    def _failed(self, dep: Deployment) -> None:
        health = self._health[dep.id]
        health.failures += 1
        if health.failures >= self._settings.cooldown_failures:
            health.cooldown_until = time.monotonic() + self._settings.cooldown_s
            health.failures = 0
            log.warning("deployment %s cooling down for %.0fs", dep.id, self._settings.cooldown_s)

    def _succeeded(self, dep: Deployment) -> None:
        health = self._health[dep.id]
        if health.failures:
            health.failures = 0

    def _backoff(self, attempt: int, exc: UpstreamError) -> float:
        s = self._settings
        delay = min(s.retry_backoff_max_s, s.retry_backoff_s * (2**attempt))
        delay *= 0.5 + random.random() / 2
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, s.retry_backoff_max_s))
        return delay

    async def run(
        self,
        names: list[str],
        invoke: Callable[[Provider], Awaitable[T]],
        needs: Sequence[Need] = (),
        eligible: Callable[[Deployment], bool] | None = None,
    ) -> Served[T]:
        """Call `invoke` on deployments until one succeeds; raise the last error otherwise. Deployments
        lacking a capability in `needs`, or that `eligible` rules out, are passed over."""
        last: UpstreamError | None = None
        skipped: Skip | None = None
        failed: set[str] = set()
        attempts = 0
        for name in names:
            for dep in self._order(name):
                if not self.serves(dep, needs, eligible):
                    continue
                provider = self.providers[dep.id]
                if not self.healthy(dep) and last is None and self._has_healthy(names, needs, eligible):
                    continue
                for retry in range(self._settings.retries + 1):
                    try:
                        result = await invoke(provider)
                    except Skip as skip:
                        skipped = skip
                        break
                    except UpstreamError as exc:
                        attempts += 1
                        exc.deployment = dep
                        last, skipped = exc, None
                        failed.add(dep.id)
                        if not exc.retryable and exc.status not in _MOVE_ON:
                            raise
                        self._failed(dep)
                        if exc.status in _MOVE_ON or exc.status == 504:
                            break
                        if retry < self._settings.retries:
                            await asyncio.sleep(self._backoff(retry, exc))
                        continue
                    self._succeeded(dep)
                    return Served(result, dep, attempts + 1, len(failed - {dep.id}))
        if skipped is not None:
            raise skipped.error
        if last is not None:
            raise last
        raise UpstreamError(503, "no deployment is available for this model", retryable=True)

    def _has_healthy(
        self, names: list[str], needs: Sequence[Need], eligible: Callable[[Deployment], bool] | None
    ) -> bool:
        return any(
            self.healthy(d) and self.serves(d, needs, eligible)
            for n in names
            for d in self._by_name.get(n, ())
        )

    @staticmethod
    def serves(dep: Deployment, needs: Sequence[Need], eligible: Callable[[Deployment], bool] | None) -> bool:
        """Whether `run` may send a call with these `needs` to `dep`."""
        return (not needs or served_by(needs, dep.capabilities)) and (eligible is None or eligible(dep))
