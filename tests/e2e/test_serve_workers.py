"""`switchyard serve --workers 2` on the embedded defaults: the bundled model is loaded once, in one
engine process both workers reach over loopback; it stops with serve, or when serve dies."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import httpx
import openai
import pytest

from gateway.defaults import local_model_available
from tests.e2e.test_first_answer import PROVIDER_KEYS, poll_until_ready, rss_mb
from tests.integration.gateway_proc import GatewayProcess

pytestmark = pytest.mark.skipif(not local_model_available(), reason="the bundled model is not installed")

# A worker without the model imports the gateway and its clients (~200 MB here); the model's
# weights and KV cache live in the engine process.
WORKER_RSS_MAX_MB = 400


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`: pid -> command line."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found[int(stat.parent.name)] = (
                    (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
        except (OSError, ValueError, IndexError):
            continue
    return found


def engines_of(pid: int) -> list[int]:
    return [p for p, cmd in children(pid).items() if "gateway.engine_host" in cmd]


def workers_of(pid: int) -> list[int]:
    return [p for p, cmd in children(pid).items() if "multiprocessing.spawn" in cmd]


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


async def wait_gone(pid: int, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not gone(pid):
        assert time.monotonic() < deadline, f"process {pid} still running after {within_s}s"
        await asyncio.sleep(0.1)


def kill_all(gw: GatewayProcess, orphans: list[int]) -> None:
    """serve and its children, the ones it would orphan if killed (uvicorn's workers) included."""
    assert gw.proc is not None
    leftover = [*orphans, *children(gw.proc.pid)]
    gw.kill()
    for pid in leftover:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def test_two_workers_share_one_engine_process(tmp_path: Path) -> None:
    gw = GatewayProcess(
        "workers",
        None,
        tmp_path,
        {"SWITCHYARD_LOCAL_MODEL": "true"},
        extra_args=("--workers", "2"),
        master_key=None,
    )
    for key in PROVIDER_KEYS:
        gw.env.pop(key, None)
    gw.start()
    assert gw.proc is not None
    try:
        *before, (_, ready) = await poll_until_ready(gw)
        # Ready only once the engine process had loaded the model; until then each worker said so.
        assert ready["checks"]["models"]["local"]["smollm2"]["state"] == "ok", ready
        for status, body in before:
            assert status == 503 and body["checks"]["models"]["local"]["smollm2"]["state"] == "loading", body
        engines = engines_of(gw.proc.pid)
        assert len(engines) == 1, children(gw.proc.pid)
        url = ready["checks"]["models"]["local"]["smollm2"]["engine"]
        assert f"engine process {engines[0]} listening on {url}" in gw.output()

        with openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=60) as client:
            for _ in range(4):  # spread over both workers
                answer = await asyncio.to_thread(
                    client.chat.completions.create,
                    model="smollm2",
                    messages=[{"role": "user", "content": "What is the capital of France?"}],
                    temperature=0,
                )
                assert "Paris" in (answer.choices[0].message.content or "")
            with pytest.raises(openai.BadRequestError) as bad:
                await asyncio.to_thread(
                    client.chat.completions.create,
                    model="smollm2",
                    messages=[{"role": "user", "content": "hi"}],
                    n=2,
                )
            assert bad.value.body["param"] == "n"  # type: ignore[index]

        workers = workers_of(gw.proc.pid)
        assert len(workers) == 2, children(gw.proc.pid)
        sizes = {pid: rss_mb(pid) for pid in [gw.proc.pid, *workers, *engines]}
        worker_mb = [round(sizes[w]) for w in workers]
        print(
            f"\nRSS MB: serve {sizes[gw.proc.pid]:.0f}, workers {worker_mb}, engine {sizes[engines[0]]:.0f}"
        )
        assert all(sizes[w] < WORKER_RSS_MAX_MB for w in workers), sizes
        assert sizes[engines[0]] > max(sizes[w] for w in workers), sizes

        assert await gw.stop() == 0
        await wait_gone(engines[0], 5)
    finally:
        kill_all(gw, [])


async def test_a_failed_engine_is_reported_and_dies_with_serve(tmp_path: Path) -> None:
    missing = tmp_path / "missing.gguf"
    config = tmp_path / "switchyard.yaml"
    config.write_text(f"models:\n  - name: broken\n    provider: local\n    model: {missing}\n")
    gw = GatewayProcess("broken", config, tmp_path, {}, extra_args=("--workers", "2"), master_key=None)
    gw.start()
    assert gw.proc is not None
    workers: list[int] = []
    try:
        async with httpx.AsyncClient(base_url=gw.url, timeout=5) as client:
            deadline = time.monotonic() + 120
            state = {"state": "loading"}
            while state["state"] == "loading":
                assert time.monotonic() < deadline, gw.tail()
                await asyncio.sleep(0.1)
                with contextlib.suppress(httpx.TransportError):
                    ready = await client.get("/health/ready")
                    state = ready.json()["checks"]["models"]["local"]["broken"]
            assert ready.status_code == 503 and state["state"] == "failed", ready.json()
            assert str(missing) in state["error"]
            chat = await client.post(
                "/v1/chat/completions",
                json={"model": "broken", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert chat.status_code == 503 and chat.json()["error"]["code"] == "model_load_failed", chat.text
        engines = engines_of(gw.proc.pid)
        workers = workers_of(gw.proc.pid)
        assert len(engines) == 1
        # serve killed outright, no chance to stop anything: the engine sees its parent gone and exits.
        gw.proc.send_signal(signal.SIGKILL)
        await wait_gone(engines[0], 20)
    finally:
        kill_all(gw, workers)  # the workers, orphaned by the SIGKILL
