"""A captured request rides its record: it survives the spill file's round trip, and the answer's
text is read from each door's response shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from gateway.accounting.captures import answer_text, capture_rows
from gateway.accounting.record import Capture, RequestRecord


def record(capture: Capture | None) -> RequestRecord:
    return RequestRecord(
        request_id="req_1",
        ts=datetime(2026, 12, 7, tzinfo=UTC),
        team_id="t",
        key_id="k",
        requested_model="auto",
        route="auto",
        deployment="cheap",
        provider="openai_compatible",
        tier="small",
        difficulty=0.2,
        status=200,
        error_type=None,
        prompt_tokens=3,
        completion_tokens=2,
        cached_tokens=0,
        cost_usd=Decimal("0.001"),
        latency_ms=5.0,
        ttft_ms=None,
        streamed=False,
        fallbacks=0,
        capture=capture,
    )


def test_a_capture_survives_the_spill_file() -> None:
    expires = datetime(2027, 1, 6, tzinfo=UTC)
    kept = record(Capture([{"role": "user", "content": "hi"}], b'{"choices": []}', expires))
    back = RequestRecord.from_json(orjson.loads(orjson.dumps(kept.to_json())))
    assert back == kept
    assert RequestRecord.from_json(orjson.loads(orjson.dumps(record(None).to_json()))).capture is None
    # A record spilled before kinds and captures existed reads as a client request without one.
    old = record(None).to_json()
    del old["kind"], old["capture"]
    assert (RequestRecord.from_json(old).kind, RequestRecord.from_json(old).capture) == ("request", None)


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        ({"choices": [{"message": {"role": "assistant", "content": "four"}}]}, "four"),
        ({"choices": [{"text": "four"}]}, "four"),
        ({"content": [{"type": "text", "text": "fo"}, {"type": "text", "text": "ur"}]}, "four"),
        ({"choices": [{"message": {"content": None, "tool_calls": [{"id": "c"}]}}]}, '[{"id":"c"}]'),
    ],
)
def test_the_answer_text_of_each_door(payload: dict, text: str) -> None:
    assert answer_text(orjson.dumps(payload)) == text
    assert answer_text(b"not json") == "not json"


def test_nul_never_reaches_the_database() -> None:
    expires = datetime.now(UTC) + timedelta(days=1)
    (row,) = capture_rows([record(Capture([{"content": "a\x00b"}], b"x\x00y", expires))])
    assert row["messages"] == [{"content": "a\ufffdb"}] and row["answer"] == "x\ufffdy"
