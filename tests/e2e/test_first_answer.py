"""README's first example, as a new user runs it: `switchyard serve` with the embedded defaults, no
provider keys, no master key, no config, the official openai SDK with its own defaults (no
temperature, no max_tokens). The bundled model loads at start; /health/ready says not_ready until it
has; then the example answers "Paris", five fresh clients in a row, each within 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.defaults import local_model_available
from tests.integration.gateway_proc import REPO_ROOT, GatewayProcess

EXAMPLE_URL = "http://127.0.0.1:4000/v1"
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")
LOAD_WITHIN_S = 180.0  # the load is 4-10 s alone; the suite shares two cores
ANSWER_WITHIN_S = 5.0
RSS_CEILING_MB = 900  # issue 15: the embedded default serve after answering

pytestmark = pytest.mark.skipif(not local_model_available(), reason="the bundled model is not installed")


def readme_example(marker: str) -> str:
    text = (REPO_ROOT / "README.md").read_text()
    found = re.search(rf"<!-- example: {marker} -->\n```python\n(.*?)```", text, re.DOTALL)
    assert found, f"README.md has no python block after <!-- example: {marker} -->"
    return found.group(1)


def run_example(source: str) -> tuple[str, float]:
    """What the example prints, and how long it took; a fresh namespace (a new client) each time."""
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "README.md:first-answer", "exec"), {"__name__": "__example__"})
    return out.getvalue(), time.perf_counter() - started


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


async def poll_until_ready(gw: GatewayProcess) -> list[tuple[int, dict[str, Any]]]:
    """Every /health/ready answer up to the first 200; /health/live must answer throughout."""
    answers: list[tuple[int, dict[str, Any]]] = []
    deadline = time.monotonic() + LOAD_WITHIN_S
    async with httpx.AsyncClient(base_url=gw.url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            assert gw.proc is not None and gw.proc.poll() is None, f"gateway exited:\n{gw.tail()}"
            try:
                ready = await client.get("/health/ready")
            except httpx.TransportError:  # not listening yet
                await asyncio.sleep(0.05)
                continue
            answers.append((ready.status_code, ready.json()))
            if ready.status_code == 200:
                return answers
            assert (await client.get("/health/live")).status_code == 200
            await asyncio.sleep(0.05)
    raise AssertionError(f"not ready within {LOAD_WITHIN_S}s:\n{gw.tail()}")


async def test_readme_first_answer_on_the_embedded_defaults(tmp_path: Path) -> None:
    gw = GatewayProcess("first-answer", None, tmp_path, {"SWITCHYARD_LOCAL_MODEL": "true"}, master_key=None)
    for key in PROVIDER_KEYS:
        gw.env.pop(key, None)
    gw.start()
    try:
        answers = await poll_until_ready(gw)
        *before, (_, ready) = answers
        loaded = ready["checks"]["models"]["local"]["smollm2"]
        assert ready["status"] == "ready" and loaded["state"] == "ok", ready
        # Ready never came before the model had loaded; every earlier answer said why not.
        for status, body in before:
            assert status == 503 and body["status"] == "not_ready", body
            assert body["checks"]["models"]["state"] == "loading", body
            assert body["checks"]["models"]["local"]["smollm2"]["state"] == "loading", body
        log = gw.output()
        assert "loading local model smollm2-135m-instruct" in log
        assert re.search(r"local model smollm2-135m-instruct loaded in \d+\.\d s", log), log[-3000:]
        print(f"\nreadiness: {len(before)} x 503 loading, then ready; model loaded in {loaded['load_s']} s")

        example = readme_example("first-answer")
        assert EXAMPLE_URL in example and 'model="smollm2"' in example
        local = example.replace(EXAMPLE_URL, gw.url + "/v1")
        for i in range(5):
            printed, took = await asyncio.to_thread(run_example, local)
            print(f"answer {i + 1}: {took:.2f} s {printed.strip()!r}")
            assert "Paris" in printed and took <= ANSWER_WITHIN_S, (printed, took)
        printed, took = await asyncio.to_thread(run_example, local.replace('model="smollm2"', 'model="auto"'))
        print(f"auto: {took:.2f} s {printed.strip()!r}")
        assert "Paris" in printed and took <= ANSWER_WITHIN_S, (printed, took)

        assert gw.proc is not None
        rss = rss_mb(gw.proc.pid)
        print(f"gateway RSS after answering: {rss:.0f} MB (at most {RSS_CEILING_MB})")
        assert rss <= RSS_CEILING_MB
    finally:
        await gw.stop()
