"""The request sequence, once for every door: read, parse, route, admit, dispatch, meter, record.

Every request that got past authentication ends in `finish` exactly once, with its real status:
answered, refused, failed upstream, abandoned by the client, or broken by a bug of ours. So each has a
record, and no limiter reservation outlives it.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar, cast

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.auth import Principal
from gateway.body import read_json
from gateway.control import Control, Denied
from gateway.dispatch import Served
from gateway.errors import GatewayError, bad_request, from_upstream, model_not_found, upstream_auth_failed
from gateway.limits.background import Background
from gateway.limits.model import LimitInputError
from gateway.live.runtime import LiveConfig
from gateway.live.snapshot import Snapshot
from gateway.metrics import Metrics
from gateway.pipeline.budget import budgeted, cap_output, needs_cap, output_field, priced_names
from gateway.pipeline.cascade import Cascade
from gateway.pipeline.door import CHAT_DOORS, Completed, Door, Parsed, StatefulDoor
from gateway.pipeline.gate import Gate
from gateway.pipeline.outcome import Outcome
from gateway.pipeline.race import ClientGone, race_disconnect
from gateway.planner import direct
from gateway.quality.capture import capture_of
from gateway.streaming import close_quietly
from gateway.usage import max_output_of
from providers.base import Provider, UpstreamError, Usage
from providers.deployment import Deployment
from routing.capabilities import needs_of
from routing.cascade import ConfidenceWindows

if TYPE_CHECKING:
    from gateway.quality.shadow import Shadower
    from gateway.tracing import Tracing

log = logging.getLogger("switchyard")
T = TypeVar("T")
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
# A client's x-request-id is echoed only when it is short and plain: it reaches response headers,
# logs and traces, where a long or odd value could do harm.
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class MeteredStream(StreamingResponse):
    """A relay that is recorded even when it never starts (the client left first)."""

    def __init__(
        self, events: AsyncIterator[bytes], outcome: Outcome, abandoned: Callable[[], None], **kw: Any
    ):
        super().__init__(events, **kw)
        self._outcome = outcome
        self._abandoned = abandoned

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self._outcome.finished:
                self._abandoned()


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


def client_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The client's x-request-id when it is one to echo (see _CLIENT_REQUEST_ID), else None. Read off
    the raw ASGI headers (names lower-case): a third of the time Starlette's Headers.get takes."""
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _CLIENT_REQUEST_ID.fullmatch(text) else None
    return None


class Pipeline:
    def __init__(
        self, live: LiveConfig, metrics: Metrics, max_body_bytes: int, tracing: Tracing | None = None
    ) -> None:
        self.live = live
        # None unless an OTLP endpoint is configured: then every step below checks it and nothing else.
        self.tracing = tracing
        self.max_body_bytes = max_body_bytes
        self.started_at = int(time.time())
        # Set at startup, once the limiter and the spend writer are running.
        self.control: Control | None = None
        self.metrics = metrics
        # Upstream streams being closed after their client left.
        self.background = Background()
        # Set at startup: shadow judging of routed requests (None: nothing is shadowed).
        self.shadow: Shadower | None = None
        # Recent cascade confidences per deployment, for routes with `escalate_fraction`.
        self.confidences = ConfidenceWindows()

    async def handle(self, request: Request, door: Door, principal: Principal) -> Response:
        outcome = Outcome(new_request_id(), "", door.endpoint, principal, snapshot=self.live.enter())
        outcome.client_request_id = client_request_id(request.scope["headers"])
        if self.tracing is not None:
            outcome.trace = self.tracing.start(request.headers, door.endpoint, outcome.request_id)
        try:
            return await self._handle(request, door, outcome)
        except GatewayError as exc:
            return self._error(outcome, exc, door)
        except Denied as denied:
            d = denied.denial
            exc = GatewayError(d.status, d.message, type=d.type, code=d.code, headers=d.headers)
            return self._error(outcome, exc, door)
        except LimitInputError as exc:
            return self._error(outcome, bad_request(str(exc)), door)
        except UpstreamError as exc:
            return self._failed(outcome, exc, door)
        except ClientGone:
            outcome.client_gone()
            self.finish(outcome)
            return Response(status_code=outcome.status)
        except Exception:
            log.exception("request %s failed inside the gateway", outcome.request_id)
            return self._error(outcome, GatewayError(500, "internal gateway error", type="api_error"), door)

    async def _handle(self, request: Request, door: Door, outcome: Outcome) -> Response:
        body = await read_json(request, self.max_body_bytes)
        model = body.get("model")
        if isinstance(model, str):
            outcome.requested_model = model
        parsed = door.parse(body)
        if door.stateful:
            parsed = await cast(StatefulDoor, door).load(parsed)
        if outcome.trace is None:
            names = self.route(request, parsed, outcome)
        else:
            names = outcome.trace.routing(lambda: self.route(request, parsed, outcome), outcome)
        snap = outcome.snapshot
        self.check_output(parsed, names, snap)
        await self.admit(outcome, names, parsed)
        cascade = self.cascade(door, parsed, names, outcome)
        if parsed.stream:
            return await self._stream(request, door, parsed, names, outcome, cascade)
        return await self._complete(request, door, parsed, names, outcome, cascade)

    # -- steps --------------------------------------------------------------------------------
    def route(self, request: Request, parsed: Parsed, outcome: Outcome) -> list[str]:
        """The names the call may go to, in order."""
        names = self.resolve(request, parsed, outcome)
        snap = outcome.snapshot
        return priced_names(names, snap.dispatcher.deployments, snap.prices, parsed.model, outcome)

    def resolve(self, request: Request, parsed: Parsed, outcome: Outcome) -> list[str]:
        outcome.needs = needs_of(parsed.routing)
        snap = outcome.snapshot
        deployments = snap.dispatcher.deployments(parsed.model)
        if deployments:
            outcome.known_model = True
            outcome.route_explain = direct(parsed.model, deployments, outcome.needs)
            return [parsed.model]
        route = snap.config.routes.get(parsed.model)
        if route is None:
            raise model_not_found(parsed.model)
        outcome.known_model = True
        plan = snap.planner.plan(
            parsed.model, route, parsed.routing, dict(request.headers), outcome.principal, outcome.needs
        )
        outcome.route = parsed.model
        outcome.token_counts = plan.token_counts
        outcome.route_explain = plan.explain
        outcome.difficulty = plan.difficulty
        return plan.names

    def cascade(self, door: Door, parsed: Parsed, names: list[str], outcome: Outcome) -> Cascade | None:
        """The request's cascade, when it came on a route in cascade mode (gateway.pipeline.cascade)."""
        route = outcome.snapshot.config.routes.get(outcome.route) if outcome.route else None  # type: ignore[union-attr]
        if route is None or route.mode != "cascade" or door.endpoint not in CHAT_DOORS:
            return None
        return Cascade(self, route, names, self.confidences, parsed)

    def check_output(self, parsed: Parsed, names: list[str], snap: Snapshot) -> None:
        """A requested output longer than every deployment it may reach can give is the client's
        error, and past the limiter's arithmetic: refused here rather than reserved."""
        requested = max_output_of(parsed.routing)
        if requested is None:
            return
        cap = max((snap.output_caps.get(name, 0) for name in names), default=0)
        if cap and requested > cap:
            param = "max_completion_tokens" if "max_completion_tokens" in parsed.routing else "max_tokens"
            raise bad_request(
                f"{param} is {requested}, above the maximum output of `{parsed.model}` ({cap})",
                param=param,
            )

    async def admit(self, outcome: Outcome, names: list[str], parsed: Parsed) -> None:
        """Limits and budgets are checked against the deployment the call will most likely use."""
        if self.control is None:
            return
        dispatcher = outcome.snapshot.dispatcher
        eligible = self._eligible(outcome)
        deployments = dispatcher.deployments(names[0])
        primary = [d for d in deployments if dispatcher.serves(d, outcome.needs, eligible)]
        if not primary:
            return
        check = self.control.check(outcome.principal, primary[0], parsed.routing, outcome, parsed.body)
        if check is None:
            return
        outcome.gate = Gate(self.control, check, outcome)
        await outcome.gate.open()

    def capped(self, door: Door, parsed: Parsed, provider: Provider, outcome: Outcome) -> Parsed:
        """`parsed` as this attempt sends it: its output capped to what the budgets hold, if need be."""
        gate = outcome.gate
        if gate is None or not needs_cap(door.endpoint, parsed):
            return parsed
        dep = provider.deployment
        outcome.output_cap = cap = gate.output_cap(dep)
        return parsed if cap is None else cap_output(parsed, cap, output_field(door.endpoint, dep))

    async def dispatch(
        self, request: Request, names: list[str], invoke: Callable[[Provider], Awaitable[T]], outcome: Outcome
    ) -> Served[T]:
        gate = outcome.gate.task if outcome.gate is not None else None
        if outcome.trace is not None:
            invoke = outcome.trace.attempts(invoke)
        run = outcome.snapshot.dispatcher.run(names, invoke, outcome.needs, self._eligible(outcome))
        served = await race_disconnect(request, run, gate)
        outcome.deployment = served.deployment
        outcome.fallbacks = served.fallbacks
        outcome.attempts = served.attempts
        return served

    def _eligible(self, outcome: Outcome) -> Callable[[Deployment], bool] | None:
        """A budgeted key's calls go only where they can be charged (see budget.priced_names)."""
        return outcome.snapshot.chargeable if budgeted(outcome.principal) else None

    def cost_of(self, outcome: Outcome, dep: Deployment | None, usage: Usage | None) -> Decimal | None:
        price = outcome.snapshot.prices.get(dep.id) if dep is not None else None  # type: ignore[union-attr]
        return price.cost(usage) if price is not None and usage is not None else None

    def settle(self, outcome: Outcome, usage: Usage | None) -> None:
        outcome.usage = usage
        cost = self.cost_of(outcome, outcome.deployment, usage)
        if outcome.escalated:
            # Both calls were paid for; unknown when either price is.
            cost = None if cost is None or outcome.wasted_cost is None else cost + outcome.wasted_cost
        outcome.cost = cost

    def used(self, parsed: Parsed, done: Completed, outcome: Outcome) -> Usage:
        """A complete answer's usage, counted by the gateway when the upstream gave none."""
        if done.usage is not None:
            return done.usage
        outcome.usage_counted = True
        return Usage(outcome.count_prompt(parsed.routing), done.completion_tokens())

    def finish(self, outcome: Outcome) -> None:
        if outcome.finished:
            return
        outcome.finished = True
        self.live.leave(outcome.snapshot)
        if outcome.gate is not None:
            outcome.gate.close()
        if outcome.latency_s == 0.0:
            outcome.latency_s = time.perf_counter() - outcome.started
        if outcome.deployment is not None and outcome.cost is None and outcome.usage is not None:
            self.settle(outcome, outcome.usage)
        self.metrics.record(outcome)
        if self.control is not None:
            self.control.finish(outcome, outcome.principal)
        if outcome.trace is not None:
            outcome.trace.finish(outcome)

    # -- answers ------------------------------------------------------------------------------
    async def _complete(
        self,
        request: Request,
        door: Door,
        parsed: Parsed,
        names: list[str],
        outcome: Outcome,
        cascade: Cascade | None,
    ) -> Response:
        wrap = cascade.wrap if cascade is not None else _same
        served = await self.dispatch(
            request, names, lambda p: door.complete(wrap(p), self.capped(door, parsed, p, outcome)), outcome
        )
        done = served.result
        self.settle(outcome, self.used(parsed, done, outcome))
        if outcome.gate is not None:
            outcome.gate.confirm()
        if cascade is not None:
            done = await cascade.complete(request, door, parsed, done, outcome)
        if outcome.principal.capture_prompts:
            outcome.capture = capture_of(outcome.principal, door.endpoint, parsed.routing, done.payload)
        self.finish(outcome)
        # Shadow sampling runs once the client has the whole answer (gateway.quality.shadow).
        after = None
        if self.shadow is not None and door.endpoint in CHAT_DOORS and self.shadow.wanted(outcome):
            after = BackgroundTask(self.shadow.offer, outcome, parsed.routing, done.payload)
        return Response(
            done.payload, media_type="application/json", headers=outcome.headers(), background=after
        )

    async def _stream(
        self,
        request: Request,
        door: Door,
        parsed: Parsed,
        names: list[str],
        outcome: Outcome,
        cascade: Cascade | None,
    ) -> Response:
        wrap = cascade.wrap if cascade is not None else _same
        served = await self.dispatch(
            request, names, lambda p: door.open(wrap(p), self.capped(door, parsed, p, outcome)), outcome
        )
        opened = served.result
        if outcome.gate is not None:
            try:
                outcome.gate.confirm()
            except (Denied, LimitInputError):
                # Refused after the stream began: close it and charge what it cost so far.
                await close_quietly(opened.rest)
                outcome.usage_counted = True
                self.settle(outcome, Usage(outcome.count_prompt(parsed.routing), 0))
                raise
        if cascade is not None:
            opened = await cascade.stream(request, door, parsed, opened, outcome)
        outcome.streamed = True
        outcome.ttft_s = time.perf_counter() - outcome.started

        def abandoned() -> None:
            # The client left before the relay began: its `finally` never runs, so bill the prompt here.
            outcome.client_gone()
            outcome.usage_counted = True
            self.settle(outcome, Usage(outcome.count_prompt(parsed.routing), 0))
            self.finish(outcome)
            self.background.spawn(close_quietly(opened.rest))

        return MeteredStream(
            door.relay(parsed, opened, outcome, self.finish),
            outcome,
            abandoned,
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **outcome.headers(cost_pending=True)},
        )

    # -- errors -------------------------------------------------------------------------------
    def _error(self, outcome: Outcome, exc: GatewayError, door: Door) -> Response:
        outcome.status = exc.status
        outcome.error_type = exc.type
        self.finish(outcome)
        return exc.response(outcome.headers(), door.anthropic)

    def _failed(self, outcome: Outcome, exc: UpstreamError, door: Door) -> Response:
        outcome.failed(exc)
        if upstream_auth_failed(exc):
            # Our credentials were refused, not the client's: recorded as the client is told.
            outcome.status, outcome.error_type = 502, "upstream_auth_error"
        if exc.deployment is not None:
            # Nothing was billed: the answer never came.
            outcome.deployment = exc.deployment
            outcome.cost = Decimal(0)
        self.finish(outcome)
        return from_upstream(exc, outcome.headers(), anthropic=door.anthropic)


def _same(provider: Provider) -> Provider:
    return provider
