"""Fault injection for the fake OpenAI upstream: the model ids of the `tests.fakes` fault convention
(fail-*, flaky-N-*, hang, die-midstream, stall-midstream) turned into errors, hangs and dropped bodies."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from starlette.requests import Request

from tests.fakes.echo_faults import ECHO_MIDSTREAM, ECHO_STATUS, echoed_credentials
from tests.fakes.openai_wire import ApiError

_FLAKY = re.compile(r"^flaky-(\d+)-")


class FakeStreamDied(RuntimeError):
    """Raised inside a streaming body to drop the connection mid-response (die-midstream)."""


async def inject_fault(
    model: str, request: Request, flaky_counts: dict[str, int], hang_seconds: float
) -> str | None:
    """Raise the fault the model id asks for; return "die" for die-midstream, "stall" for
    stall-midstream, "echo" for echo-key-midstream (`tests.fakes.echo_faults`), else None.
    `flaky_counts` (calls seen per flaky-N-* model id) is updated."""
    if model == "fail-400":
        raise ApiError(400, "Fake upstream: bad request (fail-400).", param=None, code="fake_fail_400")
    if model == "fail-401":
        raise ApiError(401, "Incorrect API key provided: sk-***. (fail-401)", code="invalid_api_key")
    if model == "fail-429":
        raise ApiError(
            429,
            "Rate limit reached for requests (fail-429).",
            type="requests",
            code="rate_limit_exceeded",
            headers={"retry-after": "0"},
        )
    if model == "fail-500":
        raise ApiError(500, "The server had an error while processing your request.", type="server_error")
    if model in ECHO_STATUS:
        kind = "server_error" if ECHO_STATUS[model] >= 500 else "invalid_request_error"
        raise ApiError(ECHO_STATUS[model], echoed_credentials(request.headers), type=kind)
    if model == ECHO_MIDSTREAM:
        return "echo"
    match = _FLAKY.match(model)
    if match:
        seen = flaky_counts.get(model, 0)
        flaky_counts[model] = seen + 1
        if seen < int(match.group(1)):
            raise ApiError(
                500, f"Fake upstream: flaky failure {seen + 1} of {match.group(1)}.", type="server_error"
            )
    if model == "hang":
        await hang(request, hang_seconds)
    if model == "die-midstream":
        return "die"
    if model == "stall-midstream":
        return "stall"
    return None


async def hang(request: Request, seconds: float) -> None:
    """Never answer (for `seconds`). Gives up as soon as the client hangs up, so a timed-out call
    leaves no task behind to hold up the server's shutdown; the client sees the same thing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        while loop.time() < deadline:
            if await request.is_disconnected():
                raise ApiError(499, "Client closed the request.", type="server_error")
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:  # server shutting down: end quietly, nobody is listening
        raise ApiError(503, "Fake upstream shutting down.", type="server_error") from None


async def dying_body(prefix: bytes) -> AsyncIterator[bytes]:
    """A response body that sends `prefix` and then drops the connection (die-midstream)."""
    yield prefix
    await asyncio.sleep(0.05)  # let the bytes reach the client before the connection drops
    raise FakeStreamDied("die-midstream: upstream dropped the connection")
