"""The fake OpenAI upstream's other endpoints, driven by the official `openai` SDK: legacy completions,
embeddings (base64 and float) and models."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.fakes.openai_upstream import GREETING, embedding_vector
from tests.fakes.server import ServerThread
from tests.providers import openai_fake_cases as cases

# The shared fixtures, bound as module globals so that pytest finds them here.
base_url = cases.base_url
client = cases.client
aclient = cases.aclient


def last_body(server: ServerThread) -> Any:
    return server.app.state.requests[-1].body


# ---------------------------------------------------------------- legacy completions


def test_completions(client: openai.OpenAI) -> None:
    r = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello", logprobs=2)
    assert r.object == "text_completion"
    assert r.choices[0].text == GREETING and r.choices[0].finish_reason == "stop"
    assert r.choices[0].logprobs is not None and "".join(r.choices[0].logprobs.tokens or []) == GREETING
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (2, 3)


async def test_completions_stream_async(aclient: openai.AsyncOpenAI) -> None:
    stream = await aclient.completions.create(
        model="gpt-3.5-turbo-instruct",
        prompt=["a b", "c"],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    texts = {0: "", 1: ""}
    for c in chunks[:-1]:
        for choice in c.choices:
            texts[choice.index] += choice.text
    assert texts == {0: GREETING, 1: GREETING}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 3


# ---------------------------------------------------------------- embeddings and models


def test_embeddings_sdk_default_base64(client: openai.OpenAI, openai_upstream: ServerThread) -> None:
    r = client.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"])
    assert last_body(openai_upstream)["encoding_format"] == "base64"  # what the SDK asks for by default
    assert [d.index for d in r.data] == [0, 1]
    assert r.data[0].embedding == embedding_vector("hello world")
    assert r.data[1].embedding == embedding_vector("bye")
    assert r.usage.prompt_tokens == 3


async def test_embeddings_float_async(aclient: openai.AsyncOpenAI) -> None:
    r = await aclient.embeddings.create(
        model="text-embedding-3-small", input="hello world", encoding_format="float", dimensions=4
    )
    assert r.data[0].embedding == embedding_vector("hello world", 4)
    assert abs(sum(v * v for v in r.data[0].embedding) - 1) < 1e-5


def test_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in ids
    assert client.models.retrieve("gpt-4o-mini").object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


async def test_models_async(aclient: openai.AsyncOpenAI) -> None:
    page = await aclient.models.list()
    assert any(m.id == "text-embedding-3-small" for m in page.data)
