"""The conformance suite, faults: upstream errors, one attempt per call, timeouts, closed ports and streams
that die or stall midway, for every adapter of `conformance_matrix`."""

from __future__ import annotations

import pytest

from providers.base import Chunk, Endpoint, UpstreamCall, UpstreamError
from tests.fakes.server import closed_port
from tests.providers import conformance_matrix as matrix
from tests.providers.conformance_matrix import (
    FAST_TIMEOUT,
    FAULTS,
    USER,
    Adapter,
    MakeProvider,
    chat,
    first_chunk,
    message_of,
    raises_upstream,
    stream_text,
)

# The shared fixtures, bound as module globals so that pytest finds them here.
adapter = matrix.adapter
make = matrix.make
_known_failures = matrix._known_failures


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize(("model", "status", "retryable"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_fault_complete(make: MakeProvider, model: str, status: int, retryable: bool) -> None:
    provider = make(model)
    err = await raises_upstream(provider.complete(chat(provider, [USER])))
    assert (err.status, err.retryable) == (status, retryable), vars(err)
    assert err.message


@pytest.mark.parametrize(("model", "status", "retryable"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_fault_stream_first_anext(make: MakeProvider, model: str, status: int, retryable: bool) -> None:
    provider = make(model)
    err = await raises_upstream(first_chunk(provider, chat(provider, [USER], stream=True)))
    assert (err.status, err.retryable) == (status, retryable), vars(err)


@pytest.mark.parametrize("op", ["complete", "stream", "embed"])
@pytest.mark.parametrize("model", ["fail-500", "fail-429"])
async def test_one_attempt_per_call(make: MakeProvider, adapter: Adapter, op: str, model: str) -> None:
    """Retries belong to the gateway: a failing call reaches the upstream exactly once."""
    if op == "embed" and not adapter.spec.embeddings:
        pytest.skip(f"{adapter.name} has no embeddings")
    provider = make(model)
    before = len(adapter.recorded())
    if op == "complete":
        await raises_upstream(provider.complete(chat(provider, [USER])))
    elif op == "stream":
        await raises_upstream(first_chunk(provider, chat(provider, [USER], stream=True)))
    else:
        call = UpstreamCall(
            body={"model": provider.deployment.model, "input": "hello"}, endpoint=Endpoint.EMBED
        )
        await raises_upstream(provider.embed(call))
    attempts = len(adapter.recorded()) - before
    assert attempts == 1, f"{attempts} upstream requests for one {op} call"


async def test_429_retry_after(make: MakeProvider) -> None:
    provider = make("fail-429")
    err = await raises_upstream(provider.complete(chat(provider, [USER])))
    assert err.retry_after == 0.0


async def test_flaky_then_ok(make: MakeProvider, adapter: Adapter) -> None:
    provider = make(f"flaky-1-conformance-{adapter.name}")
    err = await raises_upstream(provider.complete(chat(provider, [USER])))
    assert (err.status, err.retryable) == (500, True)
    resp = await provider.complete(chat(provider, [USER]))
    assert message_of(resp)["content"].startswith("Hello from ")


async def test_hang_times_out_complete(make: MakeProvider) -> None:
    provider = make("hang", timeout=FAST_TIMEOUT)
    err = await raises_upstream(provider.complete(chat(provider, [USER])))
    assert (err.status, err.retryable) == (504, True), vars(err)


async def test_hang_times_out_stream(make: MakeProvider) -> None:
    provider = make("hang", timeout=FAST_TIMEOUT)
    err = await raises_upstream(first_chunk(provider, chat(provider, [USER], stream=True)))
    assert (err.status, err.retryable) == (504, True), vars(err)


async def test_closed_port_complete(make: MakeProvider, adapter: Adapter) -> None:
    provider = make(api_base=f"http://127.0.0.1:{closed_port()}{adapter.spec.api_suffix}")
    err = await raises_upstream(provider.complete(chat(provider, [USER])))
    assert (err.status, err.retryable) == (502, True), vars(err)


async def test_closed_port_stream(make: MakeProvider, adapter: Adapter) -> None:
    provider = make(api_base=f"http://127.0.0.1:{closed_port()}{adapter.spec.api_suffix}")
    err = await raises_upstream(first_chunk(provider, chat(provider, [USER], stream=True)))
    assert (err.status, err.retryable) == (502, True), vars(err)


async def test_die_midstream(make: MakeProvider) -> None:
    provider = make("die-midstream")
    got: list[Chunk] = []
    with pytest.raises(UpstreamError) as info:
        async for chunk in provider.stream(chat(provider, [USER], stream=True)):
            got.append(chunk)
    assert got, "the stream failed before yielding anything"
    assert stream_text(got), "no content arrived before the failure"
    assert info.value.retryable and info.value.status >= 500, vars(info.value)


async def test_stall_midstream_is_a_midstream_failure(make: MakeProvider) -> None:
    """A stream that starts and then goes quiet past the read timeout fails as an interrupted stream
    (502, not the 504 of a call that never answered), alike for every adapter: the record and the
    client's error event must not depend on which upstream stalled."""
    provider = make("stall-midstream", timeout=FAST_TIMEOUT)
    got: list[Chunk] = []
    with pytest.raises(UpstreamError) as info:
        async for chunk in provider.stream(chat(provider, [USER], stream=True)):
            got.append(chunk)
    assert stream_text(got), "no content arrived before the stall"
    err = info.value
    assert (err.status, err.type, err.retryable) == (502, "api_error", True), vars(err)
