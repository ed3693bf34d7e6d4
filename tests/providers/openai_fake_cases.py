"""Shared pieces of the tests that drive the fake OpenAI upstream with the official `openai` SDK: the
`base_url`, `client` and `aclient` fixtures (a test module uses them by binding them as module globals) and
the user message the tests send."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import openai
import pytest

from tests.fakes.server import ServerThread

USER = [{"role": "user", "content": "Say hello to me"}]


@pytest.fixture(scope="module")
def base_url(openai_upstream: ServerThread) -> str:
    return openai_upstream.url + "/v1"


@pytest.fixture
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=5) as c:
        yield c


@pytest.fixture
async def aclient(base_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=5) as c:
        yield c
