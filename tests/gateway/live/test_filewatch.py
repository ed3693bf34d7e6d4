"""FileWatch against a callable: what counts as a change (content, not mtime), replaced and missing
files, reloads one at a time, failures logged once; SIGHUP handled in the loop instead of killing."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.live.filewatch import FileWatch, fingerprint, on_sighup

INTERVAL = 0.02


async def settle(cond: Callable[[], bool], within_s: float = 2.0) -> None:
    deadline = time.monotonic() + within_s
    while not cond():
        assert time.monotonic() < deadline, f"not within {within_s}s"
        await asyncio.sleep(0.005)
    await asyncio.sleep(5 * INTERVAL)  # and nothing more follows


class Reloads:
    def __init__(self, path: Path, delay_s: float = 0.0) -> None:
        self.path = path
        self.seen: list[str] = []
        self.delay_s = delay_s
        self.fail = False

    async def __call__(self) -> None:
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("boom")
        self.seen.append(self.path.read_text() if self.path.exists() else "<missing>")


async def test_content_changes_reload_and_a_touch_does_not(tmp_path: Path) -> None:
    path = tmp_path / "switchyard.yaml"
    path.write_text("models: []\n")
    reloads = Reloads(path)
    watch = FileWatch(path, reloads, INTERVAL, baseline=fingerprint(path))
    await watch.start()
    try:
        await asyncio.sleep(5 * INTERVAL)
        os.utime(path)  # a touch: same bytes
        await asyncio.sleep(5 * INTERVAL)
        assert reloads.seen == []
        path.write_text("models: [a]\n")
        await settle(lambda: len(reloads.seen) == 1)
        # Replaced by a rename, as editors and ConfigMaps do.
        (tmp_path / "new.yaml").write_text("models: [b]\n")
        (tmp_path / "new.yaml").replace(path)
        await settle(lambda: len(reloads.seen) == 2)
    finally:
        await watch.aclose()
    assert reloads.seen == ["models: [a]\n", "models: [b]\n"]


async def test_no_baseline_reloads_once_at_the_first_look(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("x: 1\n")
    reloads = Reloads(path)
    watch = FileWatch(path, reloads, INTERVAL)
    await watch.start()
    try:
        await settle(lambda: len(reloads.seen) == 1)
    finally:
        await watch.aclose()
    assert reloads.seen == ["x: 1\n"]


async def test_a_missing_file_is_said_once_and_not_reloaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("x: 1\n")
    reloads = Reloads(path)
    watch = FileWatch(path, reloads, INTERVAL, baseline=fingerprint(path))
    caplog.set_level(logging.WARNING, "switchyard.config")
    await watch.start()
    try:
        path.unlink()
        await asyncio.sleep(10 * INTERVAL)
        assert reloads.seen == []
        path.write_text("x: 1\n")  # back as it was: nothing to reload
        await asyncio.sleep(5 * INTERVAL)
        assert reloads.seen == []
        path.write_text("x: 2\n")
        await settle(lambda: len(reloads.seen) == 1)
    finally:
        await watch.aclose()
    text = [r.getMessage() for r in caplog.records]
    assert len(text) == 2, text
    assert text[0].startswith(f"cannot read config file {path} (No such file or directory)")
    assert text[1] == f"config file {path} is readable again"


async def test_reloads_run_one_at_a_time_and_failures_are_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("x: 0\n")
    reloads = Reloads(path, delay_s=0.1)
    watch = FileWatch(path, reloads, INTERVAL, baseline=fingerprint(path))
    caplog.set_level(logging.WARNING, "switchyard.config")
    await watch.start()
    try:
        watch.request()
        await asyncio.sleep(0.03)  # that reload is under way
        for _ in range(10):  # SIGHUPs in a burst meanwhile: one more reload after it, not ten
            watch.request()
        await settle(lambda: len(reloads.seen) == 2, 3.0)
        reloads.fail = True
        for i in range(3):
            watch.request()
            await asyncio.sleep(0.15)
            path.write_text(f"x: {i + 1}\n")
            await asyncio.sleep(0.15)
        reloads.fail = False
        path.write_text("x: ok\n")
        await settle(lambda: reloads.seen[-1:] == ["x: ok\n"], 3.0)
    finally:
        await watch.aclose()
    assert reloads.seen[:2] == ["x: 0\n", "x: 0\n"]
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None


async def test_sighup_calls_back_in_the_loop_and_is_given_back() -> None:
    heard = asyncio.Event()
    before = signal.getsignal(signal.SIGHUP)
    undo = on_sighup(heard.set)
    assert undo is not None, "pytest runs this on the main thread"
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.wait_for(heard.wait(), 2.0)
    finally:
        undo()
    assert signal.getsignal(signal.SIGHUP) == before


async def test_off_the_main_thread_sighup_is_left_alone() -> None:
    async def elsewhere() -> object:
        return on_sighup(lambda: None)

    assert await asyncio.to_thread(asyncio.run, elsewhere()) is None
