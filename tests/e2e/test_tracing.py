"""OpenTelemetry: a gateway with SWITCHYARD_OTEL_ENDPOINT exports a span per request (GenAI semantic
conventions, cost, route, difficulty), with routing and each upstream attempt as its children, to an
in-process OTLP/HTTP collector (tests.fakes.otlp_collector); the attempt's context reaches the upstream
as `traceparent`, and a client's traceparent is continued. A client's x-request-id is echoed when it
is plain and short. Without the setting nothing is traced and upstreams get no traceparent.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from tests.e2e.gateway_harness import CLIENT_TIMEOUT_S, MASTER_KEY, gateway_settings
from tests.fakes import anthropic_upstream, openai_upstream, otlp_collector
from tests.fakes.otlp_collector import Span
from tests.fakes.server import ServerThread, closed_port

SERVER, INTERNAL, CLIENT = 2, 1, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
ERROR = 2
# The client's own trace: the gateway's request span is its child.
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_PARENT = "b7ad6b7169203331"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    url: str
    collector: ServerThread
    openai_fake: ServerThread
    anthropic_fake: ServerThread

    def spans_of(self, request_id: str, count: int) -> list[Span]:
        """The `count` spans of the trace whose request span has this request id."""
        deadline = time.monotonic() + 10
        while True:
            spans: list[Span] = list(self.collector.app.state.spans)
            root = [s for s in spans if s.attributes.get("switchyard.request_id") == request_id]
            if root:
                mine = [s for s in spans if s.trace_id == root[0].trace_id]
                if len(mine) >= count or time.monotonic() > deadline:
                    return mine
            elif time.monotonic() > deadline:
                raise AssertionError(f"no span of {request_id}")
            time.sleep(0.02)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("tracing")
    with (
        ServerThread(otlp_collector.create_app()) as collector,
        ServerThread(openai_upstream.create_app()) as oa,
        ServerThread(anthropic_upstream.create_app()) as an,
    ):
        price = {"input_per_mtok": 1, "output_per_mtok": 2}
        oa_dep = {"provider": "openai", "api_base": oa.url + "/v1", "api_key": "k", "price": price}
        models = [
            {"name": "gpt", "model": "gpt-upstream", **oa_dep},
            {"name": "claude", "provider": "anthropic", "model": "claude-upstream", "api_base": an.url,
             "api_key": "k", "price": price},
            {"name": "fallback", "model": "refused-upstream", **oa_dep,
             "api_base": f"http://127.0.0.1:{closed_port()}/v1"},
            {"name": "fallback", "model": "gpt-upstream", **oa_dep},
        ]  # fmt: skip
        routes = {"auto": {"candidates": ["gpt", "claude"], "quality": 0.5}}
        config = parse_config({"models": models, "routes": routes}, env={})
        settings = gateway_settings(state).model_copy(
            update={
                "otel_endpoint": collector.url,
                "otel_service_name": "switchyard-test",
                "otel_export_interval_s": 0.05,
                "retries": 0,
            }
        )
        with ServerThread(create_app(settings, config)) as gw:
            yield Stack(gw.url, collector, oa, an)


@pytest.fixture(scope="module")
def oai(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=stack.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
    ) as c:
        yield c


def by_kind(spans: list[Span], kind: int) -> list[Span]:
    return [s for s in spans if s.kind == kind]


def traceparent_of(headers: dict[str, str]) -> tuple[str, str]:
    version, trace_id, parent, flags = headers["traceparent"].split("-")
    # Sampled (01); a trace the gateway began also says its id is random (02, W3C level 2).
    assert version == "00" and int(flags, 16) & 1
    return trace_id, parent


def test_routed_request_is_one_trace_continued_from_the_client(oai: openai.OpenAI, stack: Stack) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "Say hello to the tracer"}],
        extra_headers={
            "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01",
            "x-request-id": "client-42.a:b_c",
        },
    )
    assert raw.headers["x-request-id"] == "client-42.a:b_c"
    request_id = raw.headers["x-switchyard-request-id"]
    spans = stack.spans_of(request_id, 3)
    [server] = by_kind(spans, SERVER)
    [routing] = by_kind(spans, INTERNAL)
    [attempt] = by_kind(spans, CLIENT)

    assert server.trace_id == CLIENT_TRACE and server.parent_span_id == CLIENT_PARENT
    assert routing.parent_span_id == server.span_id and attempt.parent_span_id == server.span_id
    assert server.service_name == "switchyard-test"
    a = server.attributes
    deployment = raw.headers["x-switchyard-model"]
    upstream_model = {"gpt": "gpt-upstream", "claude": "claude-upstream"}[deployment]
    assert server.name == "chat auto"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "auto"
    assert a["gen_ai.response.model"] == upstream_model
    assert a["gen_ai.provider.name"] == {"gpt": "openai", "claude": "anthropic"}[deployment]
    usage = raw.parse().usage
    assert usage is not None
    assert a["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert Decimal(str(a["switchyard.cost_usd"])) == Decimal(raw.headers["x-switchyard-cost-usd"])
    assert a["switchyard.route"] == "auto"
    assert 0 <= a["switchyard.difficulty"] <= 1
    assert a["switchyard.client_request_id"] == "client-42.a:b_c"
    assert a["http.response.status_code"] == 200

    assert routing.name == "route"
    assert routing.attributes["switchyard.route"] == "auto"
    assert routing.attributes["switchyard.candidates"] == ["gpt", "claude"]
    assert routing.attributes["switchyard.difficulty"] == a["switchyard.difficulty"]
    assert attempt.name == f"chat {upstream_model}"
    assert attempt.attributes["switchyard.deployment"] == deployment

    # The upstream saw the attempt's span as its parent, in the client's trace.
    if deployment == "gpt":
        headers = stack.openai_fake.app.state.requests[-1].headers
    else:
        headers = stack.anthropic_fake.app.state.requests[-1]["headers"]
    assert traceparent_of(headers) == (CLIENT_TRACE, attempt.span_id)


def test_each_attempt_is_a_span_and_the_failed_one_says_why(oai: openai.OpenAI, stack: Stack) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="fallback", messages=[{"role": "user", "content": "hi"}]
    )
    spans = stack.spans_of(raw.headers["x-switchyard-request-id"], 4)
    [server] = by_kind(spans, SERVER)
    attempts = by_kind(spans, CLIENT)
    assert [s.attributes["gen_ai.request.model"] for s in attempts] == ["refused-upstream", "gpt-upstream"]
    assert all(s.parent_span_id == server.span_id for s in attempts)
    failed, served = attempts
    assert failed.status_code == ERROR and failed.attributes["error.type"] == "api_connection_error"
    assert failed.attributes["http.response.status_code"] == 502
    assert served.status_code != ERROR
    # A new trace: the client sent none.
    assert server.parent_span_id == ""
    assert traceparent_of(stack.openai_fake.app.state.requests[-1].headers) == (
        server.trace_id,
        served.span_id,
    )


def test_streamed_messages_span_ends_with_the_stream_and_counts_its_tokens(stack: Stack) -> None:
    with anthropic.Anthropic(base_url=stack.url, api_key=MASTER_KEY, max_retries=0) as claude:
        raw = claude.messages.with_raw_response.create(
            model="claude",
            max_tokens=64,
            system=[{"type": "text", "text": "Cache me please", "cache_control": {"type": "ephemeral"}}],
            messages=[{"role": "user", "content": "one two"}],
            stream=True,
        )
        request_id = raw.headers["x-switchyard-request-id"]
        events = list(raw.parse())
    assert events[-1].type == "message_stop"
    [server] = by_kind(stack.spans_of(request_id, 3), SERVER)
    a = server.attributes
    assert server.name == "chat claude"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (5, 3)
    assert a["gen_ai.usage.cache_creation.input_tokens"] == 3
    assert a["gen_ai.usage.cache_read.input_tokens"] == 0
    assert a["gen_ai.provider.name"] == "anthropic"
    # 2 fresh tokens at $1, 3 written to the cache at 1.25x that, 3 out at $2, per Mtok.
    assert Decimal(str(a["switchyard.cost_usd"])) == Decimal("0.00001175")


def test_refused_request_is_traced_with_its_error(oai: openai.OpenAI, stack: Stack) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    request_id = info.value.response.headers["x-switchyard-request-id"]
    spans = stack.spans_of(request_id, 2)
    [server] = by_kind(spans, SERVER)
    [routing] = by_kind(spans, INTERNAL)
    assert server.attributes["http.response.status_code"] == 404
    assert server.attributes["error.type"] == "invalid_request_error"
    assert routing.attributes["error.type"] == "invalid_request_error"
    assert not by_kind(spans, CLIENT)


@pytest.mark.parametrize(
    "sent",
    ["x" * 129, "has space", "semi;colon", "-leading-dash", "ünïcode", ""],
)
def test_an_unsafe_client_request_id_is_not_echoed(stack: Stack, sent: str) -> None:
    headers = {"authorization": f"Bearer {MASTER_KEY}", "x-request-id": sent}
    body: dict[str, Any] = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
    resp = httpx.post(
        stack.url + "/v1/chat/completions",
        json=body,
        headers={k: v.encode() for k, v in headers.items()},  # type: ignore[misc]
        timeout=CLIENT_TIMEOUT_S,
    )
    assert resp.status_code == 200
    assert resp.headers["x-request-id"] == resp.headers["x-switchyard-request-id"]
    assert resp.headers["x-request-id"].startswith("req_")


def test_without_an_endpoint_nothing_is_traced(tmp_path: Any) -> None:
    with ServerThread(openai_upstream.create_app()) as oa:
        models = [
            {"name": "gpt", "provider": "openai", "model": "m", "api_base": oa.url + "/v1", "api_key": "k"}
        ]
        app = create_app(gateway_settings(tmp_path), parse_config({"models": models}, env={}))
        assert app.state.pipeline.tracing is None
        with ServerThread(app) as gw:
            resp = httpx.post(
                gw.url + "/v1/chat/completions",
                json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
                headers={
                    "authorization": f"Bearer {MASTER_KEY}",
                    "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01",
                },
                timeout=CLIENT_TIMEOUT_S,
            )
        assert resp.status_code == 200
        # The client's own traceparent is not forwarded either: nothing of tracing runs.
        assert "traceparent" not in oa.app.state.requests[-1].headers


def test_without_an_endpoint_no_tracing_module_is_loaded(tmp_path: Any) -> None:
    """Off means absent: neither gateway.tracing nor the OTLP exporter is imported (the redis client
    imports parts of the OpenTelemetry SDK itself)."""
    script = (
        "import sys\n"
        "from gateway.app import create_app\n"
        "from gateway.config import parse_config\n"
        "from tests.e2e.gateway_harness import gateway_settings\n"
        "from pathlib import Path\n"
        f"settings = gateway_settings(Path({str(tmp_path)!r}))\n"
        "app = create_app(settings, parse_config({'models': []}, env={}))\n"
        "otlp = 'opentelemetry.exporter.otlp.proto.http'\n"
        "loaded = [m for m in ('gateway.tracing', otlp) if m in sys.modules]\n"
        "assert app.state.pipeline.tracing is None and not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("sent", ["garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", "zz-" + "a" * 80])
def test_an_invalid_traceparent_starts_a_new_trace(stack: Stack, sent: str) -> None:
    resp = httpx.post(
        stack.url + "/v1/chat/completions",
        json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {MASTER_KEY}", "traceparent": sent},
        timeout=CLIENT_TIMEOUT_S,
    )
    assert resp.status_code == 200
    [server] = by_kind(stack.spans_of(resp.headers["x-switchyard-request-id"], 3), SERVER)
    assert server.parent_span_id == "" and server.trace_id != "0" * 32
    assert traceparent_of(stack.openai_fake.app.state.requests[-1].headers)[0] == server.trace_id
