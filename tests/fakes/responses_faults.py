"""Malformed 200s from the fake OpenAI upstream's /v1/responses, chosen by the model id as the other
faults are (`tests.fakes`). Each answers 200 with something a real Response or its event stream never is:

  resp-not-json         a body that is not JSON
  resp-list             a JSON list
  resp-no-output        a JSON object without `output` or `usage`
  resp-bad-usage        a Response whose usage counts are negative and not integers
  resp-error-first      (streamed) an `error` event first, then the stream ends
  resp-failed-first     (streamed) `response.failed` first, then the stream ends
  resp-error-midstream  (streamed) the first text delta, then an `error` event, then the stream ends
  resp-no-completed     (streamed) every event but the last, `response.completed`, then a clean end
  resp-garbage-event    (streamed) `response.created`, then a data line that is not JSON
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from tests.fakes.openai_wire import iterate_frames, json_response

BAD_USAGE = {"input_tokens": -1_000_000, "output_tokens": 2.5, "total_tokens": "lots"}
FAULTS = frozenset(
    {
        "resp-not-json",
        "resp-list",
        "resp-no-output",
        "resp-bad-usage",
        "resp-error-first",
        "resp-failed-first",
        "resp-error-midstream",
        "resp-no-completed",
        "resp-garbage-event",
    }
)


def _frame(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def faulty(model: str, response: dict[str, Any], frames: list[bytes] | None) -> Response:
    """The fault `model` names; `response` is the answer the fake would have given, `frames` its event
    stream when the request was streamed (None when not)."""
    if frames is None:
        if model == "resp-not-json":
            return Response(b"<html>upstream proxy error</html>", media_type="application/json")
        if model == "resp-list":
            return json_response([response])
        if model == "resp-no-output":
            return json_response({"id": response["id"], "object": "response", "status": "completed"})
        return json_response({**response, "usage": BAD_USAGE})
    if model == "resp-error-first":
        error = {"type": "error", "code": "server_error", "message": "boom", "param": None}
        out = [_frame({**error, "sequence_number": 0})]
    elif model == "resp-failed-first":
        failed = {**response, "status": "failed", "error": {"code": "server_error", "message": "boom"}}
        out = [_frame({"type": "response.failed", "response": failed, "sequence_number": 0})]
    elif model == "resp-error-midstream":
        error = {"type": "error", "code": "server_error", "message": "boom midway", "param": None}
        out = [*frames[:5], _frame({**error, "sequence_number": 5})]
    elif model == "resp-no-completed":
        out = frames[:-1]
    elif model == "resp-garbage-event":
        out = [frames[0], b"event: response.in_progress\ndata: {not json\n\n"]
    else:  # resp-bad-usage, streamed: the final event carries the bad usage
        done = {"type": "response.completed", "response": {**response, "usage": BAD_USAGE}}
        out = [*frames[:-1], _frame({**done, "sequence_number": len(frames) - 1})]
    return StreamingResponse(iterate_frames(out), media_type="text/event-stream")
