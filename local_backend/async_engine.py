"""The engine on its own thread, so an asyncio server never waits on a forward pass and the forward
pass never waits on the event loop. Torch releases the GIL inside its kernels, so both make progress."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from local_backend.config import EngineConfig
from local_backend.engine import LLMEngine, RequestOutput
from local_backend.sequence import SamplingParams
from local_backend.tokenizer import TextTokenizer
from local_backend.weights import Checkpoint


class EngineDead(RuntimeError):
    pass


class AsyncEngine:
    def __init__(self, model: str | Checkpoint, config: EngineConfig | None = None) -> None:
        self.model = model
        self.config = config or EngineConfig()
        self._engine: LLMEngine | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._wake = threading.Event()
        self._inbox: deque[tuple[Any, ...]] = deque()
        self._streams: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]] = {}
        self._ids = itertools.count()
        self._stopping = False
        self._thread = threading.Thread(target=self._main, name="switchyard-local-engine", daemon=True)

    def start(self) -> None:
        """Begin loading on the engine thread; returns at once."""
        if not self._thread.is_alive() and not self._ready.is_set():
            self._thread.start()

    async def wait_ready(self) -> LLMEngine:
        self.start()
        if not self._ready.is_set():
            await asyncio.get_running_loop().run_in_executor(None, self._ready.wait)
        if self._engine is None:
            raise EngineDead(f"local model failed to load: {self._error}") from self._error
        return self._engine

    @property
    def tokenizer(self) -> TextTokenizer:
        assert self._engine is not None, "wait_ready() first"
        return self._engine.tokenizer

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[RequestOutput]:
        """Deltas for one request until it finishes; closing the iterator early aborts the request."""
        await self.wait_ready()
        if self._stopping:
            raise EngineDead("local engine is shut down")
        request_id = f"req-{next(self._ids)}"
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._streams[request_id] = (asyncio.get_running_loop(), queue)
        self._send(("add", request_id, prompt_ids, params))
        finished = False
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                yield item
                if item.finished:
                    finished = True
                    return
        finally:
            self._streams.pop(request_id, None)
            if not finished:
                self._send(("abort", request_id))

    def shutdown(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _send(self, command: tuple[Any, ...]) -> None:
        self._inbox.append(command)
        self._wake.set()

    def _deliver(self, items: list[tuple[str, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[Any], Any]]] = {}
        for request_id, item in items:
            stream = self._streams.get(request_id)
            if stream is not None:
                by_loop.setdefault(stream[0], []).append((stream[1], item))
        for loop, batch in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that caller's loop has closed; nobody listens
                loop.call_soon_threadsafe(_put_all, batch)

    def _main(self) -> None:
        try:
            self._engine = LLMEngine(self.model, self.config)
        except BaseException as exc:  # surfaced to every caller of wait_ready()
            self._error = exc
            return
        finally:
            self._ready.set()
        engine = self._engine
        while not self._stopping:
            failed = self._drain(engine)
            if failed:
                self._deliver(failed)
            if not engine.has_work:
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                outputs = engine.step()
            except Exception as exc:  # fail the requests in flight, keep serving new ones
                live = engine.live_requests()
                for request_id in live:
                    engine.abort(request_id)
                self._deliver([(rid, EngineDead(f"local engine step failed: {exc!r}")) for rid in live])
                continue
            self._deliver([(out.request_id, out) for out in outputs])
        self._deliver([(rid, EngineDead("local engine shut down")) for rid in list(self._streams)])

    def _drain(self, engine: LLMEngine) -> list[tuple[str, Any]]:
        failed: list[tuple[str, Any]] = []
        while self._inbox:
            command = self._inbox.popleft()
            if command[0] == "add":
                _, request_id, prompt_ids, params = command
                try:
                    engine.add_request(request_id, prompt_ids, params)
                except ValueError as exc:
                    failed.append((request_id, exc))
            else:
                engine.abort(command[1])
        return failed


def _put_all(batch: list[tuple[asyncio.Queue[Any], Any]]) -> None:
    for queue, item in batch:
        queue.put_nowait(item)
