"""Cascade mode's calls: the route's chosen candidate answers first with its token logprobs, and an
answer it was unsure of (routing.cascade) is asked again of the next tier up; the client receives
only the answer that is kept.

- Which calls are checked: chat and messages requests (legacy completions and embeddings on a
  cascade route are served as on any route) on a deployment whose provider returns logprobs
  (openai, azure, openai_compatible, local) and that keeps the `logprobs` capability. The others
  (anthropic, gemini, litellm) skip the check: the candidate the router chose answers as on a route
  without a cascade (`cascade=unchecked; no_logprobs=<provider>` in `x-switchyard-route`). Starting
  them one tier up instead would make a cascade dearer than the plain route it replaces.
- Logprobs the client did not ask for are taken out of what it receives (`Probe`); a client that asked
  gets the kept answer's own.
- Streams: up to `cascade_hold_tokens` answer tokens are held back; the decision is taken on them
  (or on the whole answer, if shorter). A kept stream releases what it held and streams on.
- An escalated request is billed for both calls (Outcome.wasted_*); an escalation that fails (no
  higher tier, an upstream error, a budget that cannot pay) keeps the first answer. While a stream's
  escalation is awaited its first answer is read on (`Drain`): the upstream goes on generating, and
  bills, until it is hung up on, so those tokens are counted too.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request

from gateway.config import Route
from gateway.control import Denied
from gateway.pipeline.door import Completed, Door, Opened, Parsed
from gateway.pipeline.outcome import Outcome
from gateway.pipeline.race import race_disconnect
from gateway.streaming import close_quietly
from providers.base import Chunk, Provider, UpstreamCall, UpstreamError, UpstreamResponse, Usage
from providers.deployment import TIER_RANK, Deployment
from routing.cascade import ConfidenceWindows, Verdict, confidence, decide, strip_logprobs, token_logprobs

if TYPE_CHECKING:
    from gateway.pipeline.core import Pipeline

_UNSAFE = re.compile(r"[^A-Za-z0-9._:/@+#-]")
LOGPROB_PROVIDERS = frozenset({"openai", "azure", "openai_compatible", "local"})


def probes(dep: Deployment) -> bool:
    """Whether a cascade asks `dep` for logprobs."""
    return dep.provider in LOGPROB_PROVIDERS and "logprobs" in dep.capabilities


def _answer_tokens(data: dict[str, Any], logprobs: int) -> int:
    """A chunk's answer tokens: its logprobs, else one for a chunk that says anything (a tool call's
    arguments carry none), so that holding back always ends."""
    if logprobs:
        return logprobs
    for choice in data.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and (delta.get("content") or delta.get("tool_calls")):
            return 1
    return 0


class Probe:
    """A provider whose chat calls ask for logprobs: it records the answer's token logprobs and
    hands the answer on without them unless the client asked for them itself (`keep`)."""

    def __init__(self, provider: Provider, keep: bool) -> None:
        self.deployment = provider.deployment
        self.native_text = provider.native_text
        self._inner = provider
        self._keep = keep
        self.logprobs: list[float] = []
        self.tokens = 0  # answer tokens streamed so far
        self.usage: Usage | None = None  # a stream's own usage, once its usage chunk came

    def _ask(self, call: UpstreamCall) -> UpstreamCall:
        return UpstreamCall({**call.body, "logprobs": True}, call.endpoint, call.headers)

    async def complete(self, call: UpstreamCall) -> UpstreamResponse:
        resp = await self._inner.complete(self._ask(call))
        self.logprobs = token_logprobs(resp.data.get("choices"))
        if self._keep:
            return resp
        data = strip_logprobs(resp.data)
        return UpstreamResponse(orjson.dumps(data), data, resp.usage)

    async def stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]:
        events = self._inner.stream(self._ask(call))
        try:
            async for chunk in events:
                found = token_logprobs(chunk.data.get("choices"))
                self.logprobs += found
                self.tokens += _answer_tokens(chunk.data, len(found))
                if chunk.data.get("usage"):
                    self.usage = Usage.from_openai(chunk.data["usage"])
                yield chunk if self._keep or not found else Chunk.from_data(strip_logprobs(chunk.data))
        finally:
            await close_quietly(events)

    async def embed(self, call: UpstreamCall) -> UpstreamResponse:
        return await self._inner.embed(call)

    async def aclose(self) -> None:
        """The wrapped provider belongs to the dispatcher, which closes it."""


class Replay:
    """The chunks held back, then the read a `Drain` left in flight (if any), then the rest of the
    stream; closing it closes the upstream."""

    def __init__(
        self,
        held: list[Chunk],
        rest: AsyncIterator[Chunk],
        pending: asyncio.Future[Chunk | None] | None = None,
    ) -> None:
        self._held = held
        self._rest = rest
        self._pending = pending

    def __aiter__(self) -> Replay:
        return self

    async def __anext__(self) -> Chunk:
        if self._held:
            return self._held.pop(0)
        if self._pending is not None:
            pending, self._pending = self._pending, None
            chunk = await pending
            if chunk is None:
                raise StopAsyncIteration
            return chunk
        return await anext(self._rest)

    async def aclose(self) -> None:
        self._held = []
        await _hang_up(self._pending, self._rest)


class Drain:
    """Reads a held stream on into `held` while its escalation is awaited. `stop` leaves the stream
    whole: the read in flight is handed over, for `Replay` to finish or `_hang_up` to cancel."""

    def __init__(self, rest: AsyncIterator[Chunk], held: list[Chunk]) -> None:
        self._rest = rest
        self._held = held
        self._next: asyncio.Future[Chunk | None] | None = None
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            self._next = asyncio.ensure_future(anext(self._rest, None))
            # Shielded: cancelling the drain must not cancel the read, which would end the stream.
            chunk = await asyncio.shield(self._next)
            if chunk is None:
                return
            self._held.append(chunk)

    def stop(self) -> asyncio.Future[Chunk | None] | None:
        """The read in flight, whose chunk is not in `held` (None when there is none). The drain's task
        is cancelled and not waited for: suspended at its read, it can append nothing more, and an
        await here would take a cancel aimed at the request for the drain's own (an upstream error
        stays in the read, for whoever finishes it)."""
        self._task.cancel()
        return self._next


async def _hang_up(pending: asyncio.Future[Chunk | None] | None, rest: AsyncIterator[Chunk]) -> None:
    if pending is not None:
        pending.cancel()
        with contextlib.suppress(BaseException):
            await pending
    await close_quietly(rest)


class Cascade:
    """One request's cascade on `route`, whose planned candidates are `names`."""

    def __init__(
        self, pipeline: Pipeline, route: Route, names: list[str], windows: ConfidenceWindows, parsed: Parsed
    ) -> None:
        self._pipeline = pipeline
        self._route = route
        self._names = names
        self._windows = windows
        self._keep = bool(parsed.routing.get("logprobs"))
        # The probe of the latest attempt; None when that attempt's deployment returns no logprobs.
        self.probe: Probe | None = None

    def wrap(self, provider: Provider) -> Provider:
        """`provider` for one attempt of the first call: probed when it can be."""
        self.probe = Probe(provider, self._keep) if probes(provider.deployment) else None
        return self.probe or provider

    def _verdict(self, outcome: Outcome, dep: Deployment, logprobs: list[float]) -> Verdict:
        conf = confidence(logprobs)
        fraction = self._route.escalate_fraction
        if fraction is None:
            verdict = decide(conf, self._route.min_confidence)
        else:
            threshold, seen = self._windows.threshold(dep.id, fraction)
            verdict = decide(conf, threshold, seen)
        if conf is not None:
            self._windows.add(dep.id, conf.mean)
        outcome.route_explain += "; " + verdict.explain
        if fraction is not None:
            outcome.route_explain += f"; ef={fraction:.2f}"
        return verdict

    def _higher(self, outcome: Outcome, dep: Deployment) -> list[str]:
        """The planned candidates above `dep`'s tier, in the plan's order."""
        deployments = outcome.snapshot.dispatcher.deployments  # type: ignore[union-attr]
        rank = TIER_RANK[dep.tier]
        return [n for n in self._names if (ds := deployments(n)) and TIER_RANK[ds[0].tier] > rank]

    def _unchecked(self, outcome: Outcome, dep: Deployment | None) -> None:
        provider = dep.provider if dep is not None else "none"
        outcome.route_explain += f"; cascade=unchecked; no_logprobs={provider}"

    async def _escalate(
        self, request: Request, door: Door, parsed: Parsed, outcome: Outcome, higher: list[str], stream: bool
    ) -> Any | None:
        """The answer of the next tier up (Completed, or Opened for a stream); None, and the reason in
        the explanation, when there is none to be had."""
        pipeline = self._pipeline
        if not higher:
            outcome.route_explain = outcome.route_explain.replace("cascade=escalated", "cascade=kept")
            outcome.route_explain += "; no_higher_tier"
            return None
        if stream:

            def call(p: Provider) -> Any:
                return door.open(p, pipeline.capped(door, parsed, p, outcome))
        else:

            def call(p: Provider) -> Any:
                return door.complete(p, pipeline.capped(door, parsed, p, outcome))

        attempts = outcome.attempts
        try:
            served = await pipeline.dispatch(request, higher, call, outcome)
        except (UpstreamError, Denied) as exc:
            outcome.route_explain = outcome.route_explain.replace("cascade=escalated", "cascade=kept")
            status = exc.status if isinstance(exc, UpstreamError) else exc.denial.status
            outcome.route_explain += f"; escalation_failed={status}"
            return None
        outcome.attempts += attempts
        first = self.probe.deployment.id if self.probe is not None else ""
        outcome.route_explain += "; from=" + _UNSAFE.sub("_", first)[:64]
        return served.result

    def _wasted(self, outcome: Outcome, dep: Deployment, usage: Usage | None) -> None:
        outcome.escalated = True
        outcome.wasted_usage = usage
        outcome.wasted_cost = self._pipeline.cost_of(outcome, dep, usage)

    async def complete(
        self, request: Request, door: Door, parsed: Parsed, done: Completed, outcome: Outcome
    ) -> Completed:
        """The answer the client receives, given the first call's (already settled)."""
        dep, probe = outcome.deployment, self.probe
        if probe is None or dep is None:
            self._unchecked(outcome, dep)
            return done
        if not self._verdict(outcome, dep, probe.logprobs).escalate:
            return done
        first_usage, first_cost = outcome.usage, outcome.cost
        if outcome.gate is not None:
            outcome.gate.spend(first_cost)
        final = await self._escalate(request, door, parsed, outcome, self._higher(outcome, dep), False)
        if final is None:
            return done
        self._wasted(outcome, dep, first_usage)
        self._pipeline.settle(outcome, self._pipeline.used(parsed, final, outcome))
        return final

    async def stream(
        self, request: Request, door: Door, parsed: Parsed, opened: Opened, outcome: Outcome
    ) -> Opened:
        """The stream the client receives, given the first call's opened one: decided once
        `cascade_hold_tokens` answer tokens (or the whole answer) have come."""
        dep, probe = outcome.deployment, self.probe
        if probe is None or dep is None:
            self._unchecked(outcome, dep)
            return opened
        try:
            held = await race_disconnect(request, self._hold(opened, probe))
        except BaseException:
            # The client left, or the upstream broke, before anything was sent: bill what came.
            outcome.usage_counted = probe.usage is None
            self._pipeline.settle(outcome, probe.usage or self._counted(parsed, probe, outcome))
            self._pipeline.background.spawn(close_quietly(opened.rest))
            raise
        if not self._verdict(outcome, dep, probe.logprobs).escalate:
            return Opened(held[0], Replay(held[1:], opened.rest), opened.native)
        if outcome.gate is not None:
            usage = probe.usage or self._counted(parsed, probe, outcome)
            outcome.gate.spend(self._pipeline.cost_of(outcome, dep, usage))
        drain = Drain(opened.rest, held)
        try:
            final = await self._escalate(request, door, parsed, outcome, self._higher(outcome, dep), True)
        except BaseException:
            # The client left while the next tier was being asked: the first call is what it cost.
            pending = drain.stop()
            outcome.usage_counted = probe.usage is None
            self._pipeline.settle(outcome, probe.usage or self._counted(parsed, probe, outcome))
            self._pipeline.background.spawn(_hang_up(pending, opened.rest))
            raise
        pending = drain.stop()
        if final is None:
            return Opened(held[0], Replay(held[1:], opened.rest, pending), opened.native)
        # Billed for what it sent until now: the read in flight, if it came, passed the probe already.
        if probe.usage is None:
            outcome.usage_counted = True
        self._wasted(outcome, dep, probe.usage or self._counted(parsed, probe, outcome))
        self._pipeline.background.spawn(_hang_up(pending, opened.rest))
        return final  # type: ignore[no-any-return]

    async def _hold(self, opened: Opened, probe: Probe) -> list[Chunk]:
        held = [opened.first]
        limit = self._route.cascade_hold_tokens
        while probe.tokens < limit:
            chunk = await anext(opened.rest, None)
            if chunk is None:
                break
            held.append(chunk)
        return held

    @staticmethod
    def _counted(parsed: Parsed, probe: Probe, outcome: Outcome) -> Usage:
        return Usage(outcome.count_prompt(parsed.routing), probe.tokens)
