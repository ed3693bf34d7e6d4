"""An in-process OpenTelemetry collector: `POST /v1/traces` with an OTLP/HTTP protobuf body, the spans
decoded (opentelemetry-proto) into `app.state.spans` as `Span`s, in the order they arrived."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class Span:
    name: str
    trace_id: str  # hex, as in a traceparent
    span_id: str
    parent_span_id: str  # "" for a root span
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind
    attributes: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error
    service_name: str


def create_app() -> Starlette:
    app = Starlette(routes=[Route("/v1/traces", _traces, methods=["POST"])])
    app.state.spans = []
    return app


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


async def _traces(request: Request) -> Response:
    if request.headers.get("content-type") != PROTOBUF:
        return Response(status_code=415)
    export = ExportTraceServiceRequest()
    export.ParseFromString(await request.body())
    for resource_spans in export.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope in resource_spans.scope_spans:
            for s in scope.spans:
                request.app.state.spans.append(
                    Span(
                        name=s.name,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        kind=s.kind,
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        status_code=s.status.code,
                        service_name=str(resource.get("service.name", "")),
                    )
                )
    return Response(ExportTraceServiceResponse().SerializeToString(), media_type=PROTOBUF)
