"""Shadow judging (a route's `shadow:` config): for a sampled request a cheaper tier answered, the
route's strongest candidate is asked the same request and a judge deployment compares the two
answers (gateway.quality.judging), off the request path.

`offer` runs once the client has its whole answer (a response background task): a few attribute
checks, one random draw, and a non-blocking put on a bounded queue; a full queue drops the job and
counts it. Worker tasks make the calls, bill them to the team as request records of kind "shadow"
and "judge" (so they count in its spend and budgets like any other), stop at the team's monthly
shadow budget, and store the verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.accounting.captures import answer_text
from gateway.accounting.record import RequestRecord
from gateway.auth_store import Principal
from gateway.db.labels import ShadowVerdict
from gateway.live.runtime import LiveConfig
from gateway.live.snapshot import Snapshot
from gateway.pipeline.core import new_request_id
from gateway.pipeline.outcome import Outcome
from gateway.quality.budget import ShadowBudget
from gateway.quality.judging import Vote, combine, judge_messages, read_vote
from gateway.quality.route_config import Shadow
from providers.base import Endpoint, Provider, UpstreamCall, UpstreamError, UpstreamResponse
from providers.deployment import TIER_RANK, Deployment

log = logging.getLogger("switchyard.quality")
# What a judge needs to say A, B or TIE (a little slack for models that open with a word or two).
JUDGE_MAX_TOKENS = 16
# Shadow calls share the process with clients' requests: each waits for a moment with none in flight,
# polling this often, for at most this long; under full load the calls then take a few milliseconds
# of CPU a second and the queue drops the rest, and with upstreams that take time they run at once.
IDLE_POLL_S = 0.002
IDLE_WAIT_S = 1.0
# The body fields of the original request that the shadow call leaves out: it is never streamed.
_UNSHADOWED = ("stream", "stream_options")


@dataclass(frozen=True, slots=True)
class ShadowJob:
    request_id: str
    route: str
    shadow: Shadow
    principal: Principal
    # The deployment that answered the client, and the OpenAI-shaped chat body it was asked.
    deployment: Deployment
    body: dict[str, Any]
    answer: bytes


class Shadower:
    def __init__(
        self,
        live: LiveConfig,
        sessions: async_sessionmaker[AsyncSession],
        submit: Callable[[RequestRecord], None],
        *,
        queue_size: int = 64,
        workers: int = 1,
        seed: int | None = None,
    ) -> None:
        self._live = live
        self._sessions = sessions
        self._submit = submit
        self._queue: asyncio.Queue[ShadowJob] = asyncio.Queue(queue_size)
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []
        self._busy = 0  # workers inside a job (each holds a snapshot, so counts as in flight)
        self._random = random.Random(seed)
        self.budget = ShadowBudget(sessions)
        self.counts = {"sampled": 0, "dropped": 0, "over_budget": 0, "judged": 0, "failed": 0}

    # -- after the response -----------------------------------------------------------------------

    def wanted(self, outcome: Outcome) -> bool:
        """Whether an answered request is one its route shadows: a few lookups, made
        before the answer goes out so that requests no route shadows get no background task."""
        route, dep, snap = outcome.route, outcome.deployment, outcome.snapshot
        if route is None or dep is None or snap is None or outcome.status != 200:
            return False
        config = snap.config.routes.get(route)
        if config is None or config.shadow is None:
            return False
        return bool(TIER_RANK[dep.tier] < TIER_RANK[snap.strongest[route].tier])

    async def offer(self, outcome: Outcome, body: dict[str, Any], answer: bytes) -> None:
        """Maybe shadow this wanted request, once the client has its answer: one random draw and a
        put that never waits. Async only to run on the event loop (the queue's thread), not in
        Starlette's thread pool where a plain function background task would go."""
        route, dep, snap = outcome.route, outcome.deployment, outcome.snapshot
        if route is None or dep is None or snap is None:
            return
        shadow = snap.config.routes[route].shadow
        if shadow is None or self._random.random() >= shadow.rate:
            return
        job = ShadowJob(outcome.request_id, route, shadow, outcome.principal, dep, body, answer)
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.counts["dropped"] += 1
            return
        self.counts["sampled"] += 1

    # -- workers ----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"shadow-worker-{i}") for i in range(self._workers)
        ]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            snap = self._live.enter()
            self._busy += 1
            try:
                await self._judge(job, snap)
            except Exception:
                self.counts["failed"] += 1
                log.exception("shadow judging of request %s failed", job.request_id)
            finally:
                self._busy -= 1
                self._live.leave(snap)

    async def _until_idle(self) -> None:
        # Polled rather than signalled: an event set as each request leaves would cost every request.
        deadline = time.monotonic() + IDLE_WAIT_S
        while self._live.in_flight() > self._busy and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(IDLE_POLL_S)

    async def _judge(self, job: ShadowJob, snap: Snapshot) -> None:
        team = job.principal.team_id
        now = datetime.now(UTC)
        if not await self.budget.allows(team, job.principal.shadow_budget_usd, now):
            self.counts["over_budget"] += 1
            return
        if job.route not in snap.config.routes or job.shadow.judge not in snap.names:
            return  # the config changed since: nothing to compare against
        strong = snap.strongest[job.route]
        body = {k: v for k, v in job.body.items() if k not in _UNSHADOWED}
        shadowed = await self._call(snap, strong.name, body, job, "shadow")
        if shadowed is None:
            return
        strong_response, cost = shadowed
        cheap_answer = answer_text(job.answer)
        strong_answer = answer_text(strong_response.body)
        messages = job.body.get("messages")
        votes: list[Vote | None] = []
        for a, b in ((cheap_answer, strong_answer), (strong_answer, cheap_answer)):
            judge_body = {
                "messages": judge_messages(messages, a, b),
                "temperature": 0,
                "max_tokens": JUDGE_MAX_TOKENS,
            }
            judged = await self._call(snap, job.shadow.judge, judge_body, job, "judge")
            if judged is None:
                return
            votes.append(read_vote(answer_text(judged[0].body)))
            cost = _add(cost, judged[1])
        outcome = combine(votes[0], votes[1])
        if outcome is None:
            self.counts["failed"] += 1
            log.warning("judge %s: no readable verdict on %s: %s", job.shadow.judge, job.request_id, votes)
            return
        async with self._sessions() as session, session.begin():
            session.add(
                ShadowVerdict(
                    request_id=job.request_id,
                    ts=now,
                    team_id=team,
                    route=job.route,
                    deployment=job.deployment.id,
                    tier=job.deployment.tier,
                    strong_deployment=strong.id,
                    judge=job.shadow.judge,
                    outcome=outcome,
                    votes=votes,
                    cost_usd=cost,
                )
            )
        self.counts["judged"] += 1

    async def _call(
        self, snap: Snapshot, name: str, body: dict[str, Any], job: ShadowJob, kind: str
    ) -> tuple[UpstreamResponse, Decimal | None] | None:
        """One chat call on `name`, recorded and billed as `kind`; None when it failed."""

        async def invoke(provider: Provider) -> UpstreamResponse:
            upstream = provider.deployment.upstream_body(body)
            return await provider.complete(UpstreamCall(upstream, Endpoint.CHAT))

        await self._until_idle()
        started, arrived = time.perf_counter(), datetime.now(UTC)
        try:
            served = await snap.dispatcher.run([name], invoke)
        except UpstreamError as exc:
            self.counts["failed"] += 1
            log.warning("%s call to %s for %s failed: %s", kind, name, job.request_id, exc)
            dep = exc.deployment
            self._submit(_record(job, kind, arrived, started, dep, None, None, exc.status, exc.type))
            return None
        usage = served.result.usage
        price = snap.prices.get(served.deployment.id)
        cost = price.cost(usage) if price is not None and usage is not None else None
        self._submit(_record(job, kind, arrived, started, served.deployment, usage, cost, 200, None))
        self.budget.add(job.principal.team_id, cost, arrived)
        return served.result, cost

    def metrics_lines(self) -> list[str]:
        lines = ["# TYPE switchyard_shadow_jobs_total counter"]
        lines += [f'switchyard_shadow_jobs_total{{state="{k}"}} {v}' for k, v in self.counts.items()]
        return lines


def _add(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return None if a is None or b is None else a + b


def _record(
    job: ShadowJob,
    kind: str,
    arrived: datetime,
    started: float,
    dep: Deployment | None,
    usage: Any,
    cost: Decimal | None,
    status: int,
    error_type: str | None,
) -> RequestRecord:
    return RequestRecord(
        request_id=new_request_id(),
        ts=arrived,
        team_id=job.principal.team_id,
        key_id=job.principal.key_id,
        requested_model=dep.name if dep is not None else kind,
        route=None,
        deployment=dep.id if dep is not None else None,
        provider=dep.provider if dep is not None else None,
        tier=dep.tier if dep is not None else None,
        difficulty=None,
        status=status,
        error_type=error_type,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        cached_tokens=usage.cached_tokens if usage else 0,
        # A failed call cost nothing; an answered one without a known price or usage is unpriced.
        cost_usd=cost if status == 200 else Decimal(0),
        latency_ms=(time.perf_counter() - started) * 1000,
        ttft_ms=None,
        streamed=False,
        fallbacks=0,
        tokens_estimated=False,
        baseline_cost_usd=cost,
        kind=kind,
    )
