"""One proxied call: resolve the name, dispatch with fallbacks, answer or stream, meter the outcome."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway import legacy
from gateway.auth import Principal
from gateway.config import GatewayConfig
from gateway.control import Control, Denied
from gateway.dispatch import Dispatcher, Served
from gateway.errors import error_response, from_upstream, model_not_found
from gateway.metrics import Metrics
from gateway.outcome import Outcome
from gateway.planner import RoutePlanner
from gateway.pricing import TokenPrice
from gateway.streaming import close_quietly, relay_openai
from gateway.usage import completion_tokens
from gateway.validate import check_openai, model_of, stream_flag
from providers.base import (
    Chunk,
    Endpoint,
    Provider,
    UpstreamCall,
    UpstreamError,
    UpstreamResponse,
    Usage,
    midstream_error,
)

T = TypeVar("T")
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class ClientGone(Exception):
    """The client disconnected before an answer was ready; the upstream call was cancelled."""


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


class Proxy:
    def __init__(
        self,
        config: GatewayConfig,
        dispatcher: Dispatcher,
        prices: dict[str, TokenPrice | None],
        planner: RoutePlanner,
        metrics: Metrics,
        max_body_bytes: int,
    ) -> None:
        self.config = config
        self.max_body_bytes = max_body_bytes
        self.started_at = int(time.time())
        # Set at startup, once the limiter and the spend writer are running.
        self.control: Control | None = None
        self.dispatcher = dispatcher
        self.prices = prices
        self.planner = planner
        self.metrics = metrics

    # -- shared steps -------------------------------------------------------------------------
    def resolve(self, request: Request, model: str, body: dict[str, Any], outcome: Outcome) -> list[str]:
        if self.dispatcher.deployments(model):
            return [model]
        route = self.config.routes.get(model)
        if route is None:
            raise model_not_found(model)
        plan = self.planner.plan(model, route, body, dict(request.headers), outcome.principal)
        outcome.route = model
        outcome.token_counts = plan.token_counts
        outcome.route_explain = plan.explain
        outcome.difficulty = plan.difficulty
        return plan.names

    def settle(self, outcome: Outcome, usage: Usage | None) -> None:
        outcome.usage = usage
        dep = outcome.deployment
        price = self.prices.get(dep.id) if dep is not None else None
        outcome.cost = price.cost(usage) if price is not None and usage is not None else None

    def finish(self, outcome: Outcome) -> None:
        gate, outcome.gate = outcome.gate, None
        if gate is not None and gate.done() and not gate.cancelled():
            gate.exception()  # a refusal after a failure or a disconnect: the call is over either way
        if outcome.latency_s == 0.0:
            outcome.latency_s = time.perf_counter() - outcome.started
        if outcome.deployment is not None and outcome.cost is None and outcome.usage is not None:
            self.settle(outcome, outcome.usage)
        self.metrics.record(outcome)
        if self.control is not None:
            self.control.finish(outcome, outcome.principal)

    async def admit(self, outcome: Outcome, names: list[str], body: dict[str, Any]) -> None:
        """Limits and budgets are checked against the deployment the call will most likely use. With
        room to spare the check runs beside the call (`outcome.gate`): `dispatch` cancels the call on
        a refusal that comes first, and `admitted` applies one that comes after the answer."""
        if self.control is None:
            return
        primary = self.dispatcher.deployments(names[0])
        if not primary:
            return
        check = self.control.check(outcome.principal, primary[0], body, outcome)
        if check is None:
            return
        # Created before dispatch's task, so the limiter's command is written first.
        outcome.gate = self.control.overlap(check, outcome)
        if outcome.gate is None:
            await self.control.acquire(check, outcome)

    def admitted(self, outcome: Outcome) -> None:
        """Raise the refusal of an admission that ran beside the call and answered after it (dispatch
        has waited for it). The caller has settled the call's usage first: it was paid for."""
        gate, outcome.gate = outcome.gate, None
        if gate is not None and (exc := gate.exception()) is not None:
            raise exc

    async def refuse_stream(self, outcome: Outcome, rest: AsyncIterator[Chunk], body: dict[str, Any]) -> None:
        """`admitted` for a stream that has begun: close it and charge what it cost so far."""
        try:
            self.admitted(outcome)
        except Denied:
            await close_quietly(rest)
            outcome.usage_counted = True
            self.settle(outcome, Usage(outcome.count_prompt(body), 0))
            raise

    def gone(self, outcome: Outcome) -> Response:
        """The client hung up before the answer: nothing is sent, the outcome is still recorded."""
        outcome.status = 499
        outcome.error_type = "client_disconnected"
        self.finish(outcome)
        return Response(status_code=499)

    def deny(self, outcome: Outcome, denied: Denied, anthropic: bool = False) -> Response:
        d = denied.denial
        outcome.status = d.status
        outcome.error_type = d.type
        self.finish(outcome)
        headers = {**outcome.headers(), **d.headers}
        return error_response(
            d.status, d.message, type_=d.type, code=d.code, headers=headers, anthropic=anthropic
        )

    def fail(self, outcome: Outcome, exc: UpstreamError, anthropic: bool = False) -> Response:
        outcome.failed(exc)
        if exc.deployment is not None:
            # Nothing was billed: the answer never came.
            outcome.deployment = exc.deployment
            outcome.cost = Decimal(0)
        self.finish(outcome)
        return from_upstream(exc, outcome.headers(), anthropic=anthropic)

    async def dispatch(
        self, request: Request, names: list[str], invoke: Callable[[Provider], Awaitable[T]], outcome: Outcome
    ) -> Served[T]:
        served = await race_disconnect(request, self.dispatcher.run(names, invoke), outcome.gate)
        outcome.deployment = served.deployment
        outcome.fallbacks = served.fallbacks
        outcome.attempts = served.attempts
        return served

    # -- OpenAI endpoints ---------------------------------------------------------------------
    async def openai(
        self, request: Request, body: dict[str, Any], endpoint: Endpoint, principal: Principal
    ) -> Response:
        model = model_of(body)
        outcome = Outcome(new_request_id(), model, endpoint.value, principal=principal)
        check_openai(body, endpoint)
        stream = endpoint is not Endpoint.EMBED and stream_flag(body)
        names = self.resolve(request, model, body, outcome)
        try:
            await self.admit(outcome, names, body)
            if stream:
                return await self._stream(request, body, endpoint, names, outcome)
            return await self._complete(request, body, endpoint, names, outcome)
        except Denied as denied:
            return self.deny(outcome, denied)
        except UpstreamError as exc:
            return self.fail(outcome, exc)
        except ClientGone:
            return self.gone(outcome)

    async def _complete(
        self, request: Request, body: dict[str, Any], endpoint: Endpoint, names: list[str], outcome: Outcome
    ) -> Response:
        async def invoke(provider: Provider) -> UpstreamResponse:
            upstream = {**body, "model": provider.deployment.model}
            if endpoint is Endpoint.EMBED:
                return await provider.embed(UpstreamCall(upstream, endpoint))
            if endpoint is Endpoint.TEXT and not provider.native_text:
                chat = await provider.complete(UpstreamCall(legacy.to_chat(upstream), Endpoint.CHAT))
                return UpstreamResponse.from_data(legacy.from_chat(chat.data))
            return await provider.complete(UpstreamCall(upstream, endpoint))

        served = await self.dispatch(request, names, invoke, outcome)
        resp = served.result
        usage = resp.usage
        if usage is None:
            outcome.usage_counted = True
            completion = 0 if endpoint is Endpoint.EMBED else completion_tokens(resp.data)
            usage = Usage(outcome.count_prompt(body), completion)
        self.settle(outcome, usage)
        self.admitted(outcome)
        self.finish(outcome)
        return Response(resp.body, media_type="application/json", headers=outcome.headers())

    async def _stream(
        self, request: Request, body: dict[str, Any], endpoint: Endpoint, names: list[str], outcome: Outcome
    ) -> Response:
        options = body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage"))
        translated: list[bool] = [False]

        async def invoke(provider: Provider) -> tuple[Chunk, AsyncIterator[Chunk]]:
            upstream = {
                **body,
                "model": provider.deployment.model,
                "stream_options": {**options, "include_usage": True},
            }
            translated[0] = endpoint is Endpoint.TEXT and not provider.native_text
            if translated[0]:
                call = UpstreamCall(legacy.to_chat(upstream), Endpoint.CHAT)
            else:
                call = UpstreamCall(upstream, endpoint)
            return await open_stream(provider.stream(call))

        served = await self.dispatch(request, names, invoke, outcome)
        first, rest = served.result
        await self.refuse_stream(outcome, rest, body)
        outcome.streamed = True
        outcome.ttft_s = time.perf_counter() - outcome.started
        events = relay_openai(
            first,
            rest,
            outcome,
            body,
            include_usage=include_usage,
            convert=legacy.chunk_from_chat if translated[0] else None,
            finish=self.finish,
        )
        return StreamingResponse(
            events,
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **outcome.headers(cost_pending=True)},
        )


async def open_stream(events: AsyncIterator[Chunk]) -> tuple[Chunk, AsyncIterator[Chunk]]:
    """Wait for the first event so that a failure before it can still be retried elsewhere."""
    it = aiter(events)
    try:
        first = await anext(it)
    except StopAsyncIteration:
        raise midstream_error("upstream closed the stream before sending anything") from None
    return first, it


async def race_disconnect(
    request: Request, work: Awaitable[T], gate: asyncio.Future[None] | None = None
) -> T:
    """Run `work` while watching the client: a disconnect cancels the upstream call. `gate` is an
    admission running beside it: a refusal that comes before the answer cancels the call and is
    raised; otherwise the gate has finished by the time this returns or raises, and a refusal in it
    is for the caller to apply once it has counted the answer (Proxy.admitted)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    pending: set[asyncio.Future[Any]] = {task, watcher}
    if gate is not None:
        pending.add(gate)
    try:
        while True:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if gate in done:
                if gate.exception() is None:
                    gate = None  # admitted: only the call is left to wait for
                elif task not in done:
                    task.cancel()
                    gate.result()
            if task in done or watcher in done:
                break
        if gate is not None:
            await asyncio.wait((gate,))
    except asyncio.CancelledError:
        task.cancel()
        if gate is not None:
            gate.cancel()
        raise
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise ClientGone


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
