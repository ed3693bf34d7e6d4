"""OpenTelemetry traces of requests, exported over OTLP/HTTP: built only when SWITCHYARD_OTEL_ENDPOINT
is set (the `otel` extra), so a gateway without it imports none of this and pays one None check a step.

Each request is a SERVER span named after the GenAI semantic conventions ("chat gpt-4o"), continuing the
client's W3C `traceparent` when it sent one, with its routing and each upstream attempt as child spans.
An attempt's span context travels to the upstream as `traceparent` (providers.http.TRACE_HEADERS), so
the upstream's own spans join the trace. The request span ends when its record is made, after a stream's
last event; an attempt's when its answer, or its stream's first event, arrives.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from providers.base import Provider, UpstreamError
from providers.http import TRACE_HEADERS

if TYPE_CHECKING:
    from gateway.pipeline.outcome import Outcome

T = TypeVar("T")

log = logging.getLogger("switchyard.tracing")
# How long stopping waits for the last spans to reach the collector. The SDK's own shutdown waits up
# to 30 s for its export thread, each export up to 10 s with retries: a collector down or hung made
# the gateway take 14-20 s to stop (tests/e2e/test_tracing_faults.py).
SHUTDOWN_TIMEOUT_S = 2.0

# gen_ai.operation.name per request kind (the GenAI conventions' names).
OPERATIONS = {"chat": "chat", "messages": "chat", "text": "text_completion", "embed": "embeddings"}
# gen_ai.provider.name where the conventions name a provider otherwise than the config does.
PROVIDER_NAMES = {"gemini": "gcp.gemini", "azure": "azure.ai.openai"}


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector's base URL (a full .../v1/traces URL is kept)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


class Tracing:
    """The tracer and its exporter, one per process."""

    def __init__(self, endpoint: str, service_name: str, export_interval_s: float) -> None:
        self._endpoint = endpoint
        # A provider of our own, not the global one: whatever else runs in the process keeps its own.
        # No exit hook of the SDK's own: `shutdown` is bounded, and a hook left after a timeout would
        # wait on the collector again at interpreter exit (older SDKs join their export thread unbounded).
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}), shutdown_on_exit=False
        )
        self._provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=traces_url(endpoint)),
                schedule_delay_millis=export_interval_s * 1000,
            )
        )
        self.tracer = self._provider.get_tracer("switchyard")
        self.propagator = TraceContextTextMapPropagator()

    def start(self, headers: Mapping[str, str], endpoint: str, request_id: str) -> RequestTrace:
        """The span of one request, the child of the client's `traceparent` when it sent a valid one."""
        operation = OPERATIONS.get(endpoint, endpoint)
        span = self.tracer.start_span(
            operation,
            context=self.propagator.extract(headers),
            kind=SpanKind.SERVER,
            attributes={"gen_ai.operation.name": operation, "switchyard.request_id": request_id},
        )
        return RequestTrace(self, span, operation)

    def shutdown(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
        """Export what is left, for at most `timeout_s` (blocking: run it off the event loop)."""
        # A daemon thread of its own, not the loop's executor: asyncio.run waits for those at exit,
        # while an export the collector never answers is left behind here and dies with the process.
        flush = threading.Thread(target=self._provider.shutdown, name="otel-shutdown", daemon=True)
        flush.start()
        flush.join(timeout_s)
        if flush.is_alive():
            log.warning(
                "tracing: the collector at %s took no spans in %.1f s; the last ones are dropped",
                self._endpoint,
                timeout_s,
            )


class RequestTrace:
    __slots__ = ("_context", "_operation", "_tracing", "span")

    def __init__(self, tracing: Tracing, span: Span, operation: str) -> None:
        self._tracing = tracing
        self._operation = operation
        self._context = trace.set_span_in_context(span)
        self.span = span

    def routing(self, route: Callable[[], list[str]], outcome: Outcome) -> list[str]:
        """`route()` (the routing step) inside a span of its own."""
        span = self._tracing.tracer.start_span("route", context=self._context, kind=SpanKind.INTERNAL)
        try:
            names = route()
            span.set_attribute("switchyard.candidates", names)
            return names
        except BaseException as exc:
            span.set_attribute("error.type", getattr(exc, "type", None) or type(exc).__qualname__)
            raise
        finally:
            if outcome.route is not None:
                span.set_attribute("switchyard.route", outcome.route)
            if outcome.difficulty is not None:
                span.set_attribute("switchyard.difficulty", outcome.difficulty)
            span.set_attribute("switchyard.route_explain", outcome.route_explain)
            span.end()

    def attempts(self, invoke: Callable[[Provider], Awaitable[T]]) -> Callable[[Provider], Awaitable[T]]:
        """`invoke` with a span around each attempt, whose context the upstream receives."""
        tracer, propagator = self._tracing.tracer, self._tracing.propagator

        async def attempt(provider: Provider) -> T:
            dep = provider.deployment
            span = tracer.start_span(
                f"{self._operation} {dep.model}",
                context=self._context,
                kind=SpanKind.CLIENT,
                attributes={
                    "gen_ai.operation.name": self._operation,
                    "gen_ai.provider.name": PROVIDER_NAMES.get(dep.provider, dep.provider),
                    "gen_ai.request.model": dep.model,
                    "switchyard.deployment": dep.id,
                },
            )
            carrier: dict[str, str] = {}
            propagator.inject(carrier, context=trace.set_span_in_context(span))
            token = TRACE_HEADERS.set(carrier)
            try:
                return await invoke(provider)
            except UpstreamError as exc:
                span.set_attribute("error.type", exc.code or exc.type)
                span.set_attribute("http.response.status_code", exc.status)
                span.set_status(Status(StatusCode.ERROR, exc.message))
                raise
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                raise
            finally:
                TRACE_HEADERS.reset(token)
                span.end()

        return attempt

    def finish(self, outcome: Outcome) -> None:
        span = self.span
        span.update_name(f"{self._operation} {outcome.requested_model}".rstrip())
        attributes: dict[str, str | int | float] = {
            "gen_ai.request.model": outcome.requested_model,
            "http.response.status_code": outcome.status,
            "switchyard.route_explain": outcome.explain(),
        }
        if outcome.client_request_id is not None:
            attributes["switchyard.client_request_id"] = outcome.client_request_id
        if outcome.route is not None:
            attributes["switchyard.route"] = outcome.route
        if outcome.difficulty is not None:
            attributes["switchyard.difficulty"] = outcome.difficulty
        dep = outcome.deployment
        if dep is not None:
            attributes["gen_ai.response.model"] = dep.model
            attributes["gen_ai.provider.name"] = PROVIDER_NAMES.get(dep.provider, dep.provider)
            attributes["switchyard.deployment"] = dep.id
        usage = outcome.usage
        if usage is not None:
            attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
            attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
            attributes["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
        if outcome.cost is not None:
            # A double, as metrics backends sum it; the exact figure is the request's record.
            attributes["switchyard.cost_usd"] = float(outcome.cost)
        if outcome.error_type is not None:
            attributes["error.type"] = outcome.error_type
        span.set_attributes(attributes)
        if outcome.status >= 500:
            span.set_status(Status(StatusCode.ERROR, outcome.error_type or ""))
        span.end()
