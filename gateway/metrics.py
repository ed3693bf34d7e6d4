"""In-process request metrics, exposed at /metrics in Prometheus' text format."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from gateway.pipeline.outcome import Outcome

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def writer_lines(writer: Any) -> Callable[[], list[str]]:
    def lines() -> list[str]:
        out = ["# TYPE switchyard_spend_writer gauge"]
        out += [f'switchyard_spend_writer{{stat="{k}"}} {v}' for k, v in sorted(writer.stats().items())]
        return out

    return lines


class Metrics:
    def __init__(self) -> None:
        # Extra exposition lines from the limiter and the spend writer, wired at startup.
        self.sources: list[Callable[[], list[str]]] = []
        self.requests: defaultdict[tuple[str, str, int], int] = defaultdict(int)
        self.tokens: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.cost: defaultdict[str, Decimal] = defaultdict(Decimal)
        self.unpriced: defaultdict[str, int] = defaultdict(int)
        self.latency: defaultdict[str, list[int]] = defaultdict(lambda: [0] * (len(_BUCKETS) + 1))
        self.latency_sum: defaultdict[str, float] = defaultdict(float)

    def record(self, o: Outcome) -> None:
        dep = o.deployment.id if o.deployment is not None else "none"
        # A name the gateway does not serve is the client's text: one label for all, or a flood of
        # random names would grow the series without bound.
        model = o.requested_model if o.known_model else "(unresolved)"
        self.requests[(model, dep, o.status)] += 1
        # Every call the request paid for (a cascade's discarded first answer too), on the deployment
        # its record names: what `cost` covers, so the token and cost series agree with the records.
        usage = o.billed_usage()
        if usage is not None:
            self.tokens[(dep, "prompt")] += usage.prompt_tokens
            self.tokens[(dep, "completion")] += usage.completion_tokens
            # Parts of the prompt's count, as prices split it; a series only once there is one.
            if usage.cached_tokens:
                self.tokens[(dep, "cache_read")] += usage.cached_tokens
            if usage.cache_write_tokens:
                self.tokens[(dep, "cache_write")] += usage.cache_write_tokens
        if o.cost is not None:
            self.cost[dep] += o.cost
        elif o.deployment is not None and usage is not None:
            self.unpriced[dep] += 1
        buckets = self.latency[dep]
        for i, bound in enumerate(_BUCKETS):
            if o.latency_s <= bound:
                buckets[i] += 1
                break
        else:
            buckets[-1] += 1
        self.latency_sum[dep] += o.latency_s

    def render(self) -> str:
        lines = ["# TYPE switchyard_requests_total counter"]
        for (model, dep, status), n in sorted(self.requests.items()):
            labels = f'model="{model}",deployment="{dep}",status="{status}"'
            lines.append(f"switchyard_requests_total{{{labels}}} {n}")
        lines.append("# TYPE switchyard_tokens_total counter")
        for (dep, kind), n in sorted(self.tokens.items()):
            lines.append(f'switchyard_tokens_total{{deployment="{dep}",kind="{kind}"}} {n}')
        lines.append("# TYPE switchyard_cost_usd_total counter")
        for dep, cost in sorted(self.cost.items()):
            lines.append(f'switchyard_cost_usd_total{{deployment="{dep}"}} {cost:f}')
        lines.append("# TYPE switchyard_unpriced_requests_total counter")
        for dep, n in sorted(self.unpriced.items()):
            lines.append(f'switchyard_unpriced_requests_total{{deployment="{dep}"}} {n}')
        lines.append("# TYPE switchyard_request_seconds histogram")
        for dep, buckets in sorted(self.latency.items()):
            running = 0
            for bound, n in zip((*_BUCKETS, "+Inf"), buckets, strict=True):
                running += n
                labels = f'deployment="{dep}",le="{bound}"'
                lines.append(f"switchyard_request_seconds_bucket{{{labels}}} {running}")
            lines.append(f'switchyard_request_seconds_count{{deployment="{dep}"}} {running}')
            lines.append(f'switchyard_request_seconds_sum{{deployment="{dep}"}} {self.latency_sum[dep]:.6f}')
        for source in self.sources:
            lines.extend(source())
        return "\n".join(lines) + "\n"
