"""The Responses API in front of the bundled local engine (translated to chat completions): one
greedy answer, then a streamed follow-up that chains on it. Two short calls: the engine shares the
suite's cores."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from gateway.defaults import local_model_available
from tests.e2e.gateway_harness import MASTER_KEY, gateway_settings
from tests.fakes.server import ServerThread

pytestmark = pytest.mark.skipif(not local_model_available(), reason="the bundled model is not installed")
LOAD_WITHIN_S = 180.0


@pytest.fixture(scope="module")
def local_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    local = {
        "name": "smollm2",
        "provider": "local",
        "model": "smollm2-135m-instruct",
        "tier": "local",
        "options": {"kv_cache_mb": 32, "num_threads": 1},
    }
    config = parse_config({"models": [local]}, env={})
    state: Path = tmp_path_factory.mktemp("responses-local")
    with ServerThread(create_app(gateway_settings(state), config)) as gw:
        deadline = time.monotonic() + LOAD_WITHIN_S
        while httpx.get(gw.url + "/health/ready", timeout=5.0).status_code != 200:
            assert time.monotonic() < deadline, "the local model did not load"
            time.sleep(0.2)
        with openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=60.0) as c:
            yield c


def test_local_create_then_streamed_follow_up(local_client: openai.OpenAI) -> None:
    first = local_client.responses.create(
        model="smollm2", input="What is the capital of France?", temperature=0, max_output_tokens=8
    )
    assert "Paris" in first.output_text, first.output_text
    assert first.usage is not None and 0 < first.usage.output_tokens <= 8
    with local_client.responses.stream(
        model="smollm2",
        input="Say it again.",
        previous_response_id=first.id,
        temperature=0,
        max_output_tokens=4,
    ) as stream:
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and "response.output_text.delta" in kinds
    # Four tokens is short of an answer: the response says it was cut (the SDK's
    # get_final_response waits for response.completed only, so the event is read here).
    assert kinds[-1] == "response.incomplete"
    final = events[-1].response
    assert final.incomplete_details is not None and final.incomplete_details.reason == "max_output_tokens"
    assert final.usage is not None and final.usage.input_tokens > first.usage.input_tokens
    assert final.previous_response_id == first.id
