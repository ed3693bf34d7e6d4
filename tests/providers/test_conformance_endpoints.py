"""The conformance suite, the other endpoints: embeddings (and their faults) and native legacy text
completions, for every adapter of `conformance_matrix`."""

from __future__ import annotations

import orjson
import pytest

from providers.base import Endpoint, UpstreamCall
from tests.providers import conformance_matrix as matrix
from tests.providers.conformance_matrix import (
    FAULTS,
    Adapter,
    MakeProvider,
    check_chunk_framing,
    check_usage_tail,
    collect,
    raises_upstream,
)

# The shared fixtures, bound as module globals so that pytest finds them here.
adapter = matrix.adapter
make = matrix.make
_known_failures = matrix._known_failures


# ---------------------------------------------------------------- embeddings and legacy text


async def test_embeddings(make: MakeProvider, adapter: Adapter) -> None:
    provider = make("embed-model")
    call = UpstreamCall(
        body={"model": provider.deployment.model, "input": ["hello world", "goodbye"]},
        endpoint=Endpoint.EMBED,
    )
    if not adapter.spec.embeddings:
        err = await raises_upstream(provider.embed(call))
        assert (err.status, err.retryable) == (400, False), vars(err)
        return
    resp = await provider.embed(call)
    assert orjson.loads(resp.body) == resp.data
    assert resp.data["object"] == "list"
    data = resp.data["data"]
    assert [d["index"] for d in data] == [0, 1]
    for d in data:
        assert d["object"] == "embedding"
        assert d["embedding"] and all(isinstance(v, float) for v in d["embedding"])
    assert data[0]["embedding"] != data[1]["embedding"]
    again = await provider.embed(call)
    assert again.data["data"][0]["embedding"] == data[0]["embedding"], "embeddings are not deterministic"
    assert resp.usage is not None and resp.usage.prompt_tokens > 0


@pytest.mark.parametrize(
    ("model", "status", "retryable"), [FAULTS[0], FAULTS[3]], ids=["fail-400", "fail-500"]
)
async def test_embeddings_fault(
    make: MakeProvider, adapter: Adapter, model: str, status: int, retryable: bool
) -> None:
    if not adapter.spec.embeddings:
        pytest.skip(f"{adapter.name} has no embeddings")
    provider = make(model)
    call = UpstreamCall(body={"model": provider.deployment.model, "input": "hello"}, endpoint=Endpoint.EMBED)
    err = await raises_upstream(provider.embed(call))
    assert (err.status, err.retryable) == (status, retryable), vars(err)


async def test_native_text_completion(make: MakeProvider) -> None:
    provider = make()
    if not provider.native_text:
        pytest.skip("the gateway converts legacy completions to chat for this adapter")
    body = {"model": provider.deployment.model, "prompt": "Say hello"}
    resp = await provider.complete(UpstreamCall(body=body, endpoint=Endpoint.TEXT))
    assert resp.data["object"] == "text_completion"
    assert resp.data["choices"][0]["text"].startswith("Hello from ")
    assert resp.usage is not None and resp.usage.completion_tokens == 3
    stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    chunks = await collect(provider.stream(UpstreamCall(body=stream_body, endpoint=Endpoint.TEXT)))
    check_chunk_framing(chunks)
    text = "".join(choice.get("text") or "" for c in chunks for choice in c.data.get("choices") or [])
    assert text == resp.data["choices"][0]["text"]
    check_usage_tail(chunks)
