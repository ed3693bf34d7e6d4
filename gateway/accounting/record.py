"""The request record: one row of the request log, built from a request's Outcome."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any


@dataclass(slots=True)
class Capture:
    """What a capturing team's request said and got: the OpenAI-shaped messages as the client sent
    them, and the answer's wire bytes (decoded by the writer, off the request path)."""

    messages: Any
    answer: bytes
    expires_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "answer": self.answer.decode("utf-8", "replace"),
            "expires_at": self.expires_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Capture:
        expires = datetime.fromisoformat(data["expires_at"]).astimezone(UTC)
        return cls(data["messages"], str(data["answer"]).encode(), expires)


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    ts: datetime  # UTC, when the request arrived
    team_id: str | None
    key_id: str | None  # the API key's id, never the key or its hash
    requested_model: str
    route: str | None
    deployment: str | None  # deployment id that answered (or last tried)
    provider: str | None
    tier: str | None
    difficulty: float | None
    status: int
    error_type: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    # Exact USD; None only when no price is known for the deployment (tokens are still recorded).
    cost_usd: Decimal | None
    latency_ms: float
    ttft_ms: float | None
    streamed: bool
    fallbacks: int
    # True when the upstream gave no usage and the tokens were counted by the gateway.
    tokens_estimated: bool = False
    # What the same usage would have cost on the route's strongest candidate (exact USD); for a direct
    # request its own cost. None when unknown (no price for that candidate, or a record spilled by an
    # older version).
    baseline_cost_usd: Decimal | None = None
    # "request", or the "shadow" and "judge" calls made to measure routing (gateway.quality.shadow).
    kind: str = "request"
    # The prompt and answer of a team that captures them (not a log column: captured_prompts).
    capture: Capture | None = None
    # Prompt-cache writes, by how long the entry lives (priced apart); cache reads are cached_tokens.
    # All three are parts of prompt_tokens.
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    # A cascade that escalated (gateway.pipeline.cascade): `cost_usd` and the tokens are both calls',
    # `wasted_cost_usd` the first, discarded one's (None when its price is unknown).
    escalated: bool = False
    wasted_cost_usd: Decimal | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (for the spill file): Decimal as string, datetime as ISO 8601."""
        out = asdict(self)
        out["ts"] = self.ts.isoformat()
        out["cost_usd"] = None if self.cost_usd is None else str(self.cost_usd)
        out["baseline_cost_usd"] = None if self.baseline_cost_usd is None else str(self.baseline_cost_usd)
        out["capture"] = None if self.capture is None else self.capture.to_json()
        out["wasted_cost_usd"] = None if self.wasted_cost_usd is None else str(self.wasted_cost_usd)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestRecord:
        data = dict(data)
        data["ts"] = datetime.fromisoformat(data["ts"]).astimezone(UTC)
        data["cost_usd"] = None if data.get("cost_usd") is None else Decimal(data["cost_usd"])
        baseline = data.get("baseline_cost_usd")
        data["baseline_cost_usd"] = None if baseline is None else Decimal(baseline)
        capture = data.get("capture")
        data["capture"] = None if capture is None else Capture.from_json(capture)
        wasted = data.get("wasted_cost_usd")
        data["wasted_cost_usd"] = None if wasted is None else Decimal(wasted)
        return cls(**data)


def cost_of(
    records: Iterable[RequestRecord], *, team_id: str | None, key_id: str | None, since: date
) -> Decimal:
    """The summed cost of the records of this team and/or key from UTC day `since` on."""
    total = Decimal(0)
    for r in records:
        if not r.cost_usd or r.ts.date() < since:
            continue
        if (team_id is None or r.team_id == team_id) and (key_id is None or r.key_id == key_id):
            total += r.cost_usd
    return total
