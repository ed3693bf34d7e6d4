"""What one request came to: drives the x-switchyard-* headers, metrics and the request record."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from gateway.accounting.record import Capture
from gateway.auth import ANONYMOUS, Principal
from gateway.limits.model import Admission
from gateway.live import CONFIG_VERSION_HEADER
from gateway.pricing import format_usd
from gateway.usage import prompt_tokens
from providers.base import Usage
from providers.deployment import Deployment
from routing.capabilities import Need
from routing.tokens import count_tokens

if TYPE_CHECKING:
    from gateway.live.snapshot import Snapshot
    from gateway.pipeline.gate import Gate
    from gateway.tracing import RequestTrace

CLIENT_GONE = 499


@dataclass(slots=True)
class Outcome:
    request_id: str
    requested_model: str
    endpoint: str
    principal: Principal = ANONYMOUS
    # The config the request runs on from start to finish, whatever is applied meanwhile.
    snapshot: Snapshot | None = None
    started: float = field(default_factory=time.perf_counter)
    arrived: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Whether requested_model names a model or route this gateway serves (set once resolved).
    known_model: bool = False
    route: str | None = None
    route_explain: str = "direct"
    difficulty: float | None = None
    # What the body needs of the deployment that serves it (tools, vision...), set once resolved.
    needs: tuple[Need, ...] = ()
    deployment: Deployment | None = None
    status: int = 200
    error_type: str | None = None
    usage: Usage | None = None
    usage_counted: bool = False
    cost: Decimal | None = None
    latency_s: float = 0.0
    ttft_s: float | None = None
    streamed: bool = False
    fallbacks: int = 0
    attempts: int = 0
    # The max_tokens the gateway gave the call so that its budgets' reservation pays for the answer.
    output_cap: int | None = None
    # The limiter's answer when limits or budgets applied, and the admission's life (Gate).
    admission: Admission | None = None
    gate: Gate | None = None
    # A cascade that escalated: the first answer was paid for and thrown away. `cost` and the
    # record's tokens include it (`billed_usage`); `usage` is the final answer's.
    escalated: bool = False
    wasted_usage: Usage | None = None
    wasted_cost: Decimal | None = None
    # Set once the record is written: a request is recorded exactly once, however it ended.
    finished: bool = False
    # The prompt's tiktoken count, taken at most once: the limits' estimate, then any usage the
    # upstream left out. `token_counts` holds the texts the router already tokenised.
    prompt_count: int | None = None
    token_counts: Mapping[str, int] | None = None
    # The prompt and answer, when the team captures them (gateway.quality.capture).
    capture: Capture | None = None
    # The client's own x-request-id (checked), echoed back; the records keep request_id, ours.
    client_request_id: str | None = None
    # The request's span, when tracing is on (gateway.tracing).
    trace: RequestTrace | None = None

    def count_prompt(self, body: dict[str, Any], count: Callable[[str], int] = count_tokens) -> int:
        if self.prompt_count is None:
            self.prompt_count = prompt_tokens(body, self.token_counts, count)
        return self.prompt_count

    def billed_usage(self) -> Usage | None:
        """The tokens of every call the request paid for: the final answer's, and a cascade's first."""
        usage, wasted = self.usage, self.wasted_usage
        if wasted is None:
            return usage
        if usage is None:
            return wasted
        return Usage(
            usage.prompt_tokens + wasted.prompt_tokens,
            usage.completion_tokens + wasted.completion_tokens,
            usage.cached_tokens + wasted.cached_tokens,
            usage.cache_write_5m_tokens + wasted.cache_write_5m_tokens,
            usage.cache_write_1h_tokens + wasted.cache_write_1h_tokens,
        )

    def failed(self, exc: Exception) -> None:
        self.status = getattr(exc, "status", 500)
        self.error_type = getattr(exc, "type", "api_error")

    def client_gone(self) -> None:
        """The client hung up: recorded as such unless the request had already failed."""
        if self.status < 400:
            self.status = CLIENT_GONE
            self.error_type = "client_disconnected"

    def explain(self) -> str:
        text = self.route_explain
        if self.attempts > 1:
            text += f"; attempts={self.attempts}"
        if self.fallbacks:
            text += f"; fallbacks={self.fallbacks}"
        return text

    def headers(self, *, cost_pending: bool = False) -> dict[str, str]:
        h = {
            "x-switchyard-request-id": self.request_id,
            "x-request-id": self.client_request_id or self.request_id,
            "x-switchyard-route": self.explain(),
        }
        if self.snapshot is not None:
            h[CONFIG_VERSION_HEADER] = str(self.snapshot.version)
        if self.deployment is not None:
            h["x-switchyard-model"] = self.deployment.id
            h["x-switchyard-cost-usd"] = "pending" if cost_pending else format_usd(self.cost)
        if self.output_cap is not None:
            h["x-switchyard-max-tokens-capped"] = str(self.output_cap)
        if self.admission is not None:
            h.update(self.admission.headers())
        return h
