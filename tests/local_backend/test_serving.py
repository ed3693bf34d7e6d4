"""The two ways the gateway meets the engine: LocalProvider in process, and `python -m local_backend serve`
answering the official openai SDK."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from providers.base import Endpoint, UpstreamCall, UpstreamError
from providers.deployment import Deployment
from providers.local import LocalProvider

CHAT = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
async def provider() -> LocalProvider:
    p = LocalProvider(
        Deployment(
            name="smollm2",
            provider="local",
            model="smollm2-135m-instruct",
            tier="local",
            # max_output_tokens is the gateway's (pricing), preload an older spelling: neither stops it.
            options={"kv_cache_mb": 32, "num_threads": 1, "max_output_tokens": 4096, "preload": True},
        )
    )
    yield p
    await p.aclose()


async def test_provider_answers_a_chat(provider: LocalProvider) -> None:
    r = await provider.complete(
        UpstreamCall(
            body={"model": "smollm2-135m-instruct", "messages": CHAT, "max_tokens": 16, "temperature": 0}
        )
    )
    assert r.data["choices"][0]["message"]["content"] == "The capital of France is Paris."
    assert r.data["choices"][0]["finish_reason"] == "stop"
    assert r.usage is not None and r.usage.completion_tokens == 8 and r.usage.prompt_tokens > 30


async def test_provider_streams_with_a_usage_chunk(provider: LocalProvider) -> None:
    body = {
        "model": "smollm2-135m-instruct",
        "messages": CHAT,
        "max_tokens": 16,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = [c async for c in provider.stream(UpstreamCall(body=body))]
    assert all(c.raw.startswith(b"data: ") and c.raw.endswith(b"\n\n") for c in chunks)
    text = "".join(c.data["choices"][0]["delta"].get("content", "") for c in chunks if c.data["choices"])
    assert text == "The capital of France is Paris."
    assert chunks[-1].data["choices"] == [] and chunks[-1].data["usage"]["completion_tokens"] == 8
    assert chunks[-2].data["choices"][0]["finish_reason"] == "stop"


async def test_provider_legacy_completion_and_clean_errors(provider: LocalProvider) -> None:
    assert provider.native_text
    r = await provider.complete(
        UpstreamCall(
            body={"model": "x", "prompt": "The capital of France is", "max_tokens": 3, "temperature": 0},
            endpoint=Endpoint.TEXT,
        )
    )
    assert r.data["object"] == "text_completion" and r.data["choices"][0]["text"].startswith(" Paris")
    with pytest.raises(UpstreamError) as bad:
        await provider.complete(UpstreamCall(body={"model": "x", "messages": CHAT, "n": 2}))
    assert bad.value.status == 400 and not bad.value.retryable
    with pytest.raises(UpstreamError) as embed:
        await provider.embed(UpstreamCall(body={"input": "hi"}, endpoint=Endpoint.EMBED))
    assert embed.value.status == 400


async def test_an_answer_longer_than_the_kv_cache_holds_is_a_400(provider: LocalProvider) -> None:
    body = {"model": "x", "messages": CHAT, "max_tokens": 4000}
    with pytest.raises(UpstreamError) as caught:
        await provider.complete(UpstreamCall(body=body))
    assert caught.value.status == 400 and "KV cache" in str(caught.value)
    with pytest.raises(UpstreamError) as caught:
        await anext(provider.stream(UpstreamCall(body={**body, "stream": True})))
    assert caught.value.status == 400 and "KV cache" in str(caught.value)


async def test_provider_without_sampling_fields_answers_with_the_models_defaults(
    provider: LocalProvider,
) -> None:
    r = await provider.complete(UpstreamCall(body={"model": "smollm2-135m-instruct", "messages": CHAT}))
    assert r.data["choices"][0]["message"]["content"] == "The capital of France is Paris."
    assert r.data["choices"][0]["finish_reason"] == "stop"
    state = provider.load_state()
    assert state["state"] == "ok" and state["load_s"] > 0


async def test_provider_whose_model_fails_to_load_answers_503_with_the_reason(tmp_path: Path) -> None:
    p = LocalProvider(Deployment(name="gone", provider="local", model=str(tmp_path / "none.gguf")))
    assert p.load_state() == {"state": "not_started"}
    p.start_loading()
    with pytest.raises(UpstreamError) as failed:
        await p.complete(UpstreamCall(body={"model": "x", "messages": CHAT}))
    assert (failed.value.status, failed.value.code, failed.value.retryable) == (
        503,
        "model_load_failed",
        True,
    )
    assert failed.value.message.startswith("gone: local model failed to load: FileNotFoundError: no model at")
    with pytest.raises(UpstreamError) as streamed:
        await anext(p.stream(UpstreamCall(body={"model": "x", "messages": CHAT, "stream": True})))
    assert streamed.value.code == "model_load_failed"
    state = p.load_state()
    assert state["state"] == "failed" and "FileNotFoundError" in state["error"]
    await p.aclose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local_backend",
            "serve",
            "--model",
            "smollm2",
            "--port",
            str(port),
            "--kv-cache-mb",
            "32",
            "--num-threads",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "server exited"
            try:
                if httpx.get(base + "/health", timeout=60).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.3)
        yield base + "/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_openai_sdk_against_local_serve(server: str) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server, api_key="unused")
    assert [m.id for m in client.models.list().data] == ["smollm2"]
    r = client.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=16, temperature=0)
    assert r.choices[0].message.content == "The capital of France is Paris."
    assert r.usage.completion_tokens == 8
    stream = client.chat.completions.create(
        model="smollm2",
        messages=CHAT,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == r.choices[0].message.content
    )
    assert chunks[-1].usage.total_tokens == r.usage.total_tokens
    text = client.completions.create(
        model="smollm2", prompt="The capital of France is", max_tokens=3, temperature=0
    )
    assert text.choices[0].text.startswith(" Paris")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smollm2", messages=CHAT, n=3)
