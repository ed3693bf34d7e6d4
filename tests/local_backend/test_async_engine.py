"""The engine thread's load, as its callers see it: its state, its log lines, and waiters that hold no
thread while it lasts."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from local_backend.async_engine import AsyncEngine, ModelLoadFailed
from local_backend.config import EngineConfig
from tests.local_backend.loading import pending_model, release


async def test_many_waiters_hold_no_thread_and_all_learn_that_the_load_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = pending_model(tmp_path)
    engine = AsyncEngine(str(model), EngineConfig(num_threads=1))
    assert engine.load_state().state == "idle"
    with caplog.at_level(logging.INFO, logger="local_backend"):
        waiters = [asyncio.create_task(engine.wait_ready()) for _ in range(40)]
        try:
            await asyncio.sleep(0.2)
            assert engine.load_state().state == "loading"
            assert not any(w.done() for w in waiters)
            # Forty requests wait, and the default executor (a handful of threads) is still free.
            assert await asyncio.wait_for(asyncio.to_thread(str, "free"), 5) == "free"
            waiters[0].cancel()  # a client that left while it waited
        finally:
            release(model)  # not on the executor: the old waiters could hold all its threads
        results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 30)
    assert isinstance(results[0], asyncio.CancelledError)
    assert all(isinstance(r, ModelLoadFailed) for r in results[1:]), results[1]
    assert "local model failed to load: " in str(results[1])
    state = engine.load_state()
    assert state.state == "failed" and state.seconds is not None and state.error
    assert f"loading local model {model}" in caplog.text
    assert f"local model {model} failed to load after" in caplog.text
    with pytest.raises(ModelLoadFailed):  # later callers too, at once
        await asyncio.wait_for(engine.wait_ready(), 1)
    engine.shutdown()
