"""The engine on its own thread, so an asyncio server never waits on a forward pass and the forward
pass never waits on the event loop. Torch releases the GIL inside its kernels, so both make progress.

Loading happens on that thread too (seconds); callers that arrive meanwhile wait on a future of their
own loop, not on a thread of the default executor, so any number of them may wait."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from local_backend.config import EngineConfig
from local_backend.engine import LLMEngine, RequestOutput
from local_backend.sequence import SamplingParams
from local_backend.tokenizer import TextTokenizer
from local_backend.weights import Checkpoint

log = logging.getLogger("local_backend")


class RequestError(ValueError):
    """A request the engine cannot serve as asked: the client's fault, HTTP 400."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class EngineDead(RuntimeError):
    pass


class ModelLoadFailed(EngineDead):
    """The model never loaded: every request fails the same way until the process restarts."""


@dataclass(frozen=True, slots=True)
class LoadState:
    state: str  # idle (not started), loading, ready or failed
    seconds: float | None = None  # loading: so far; ready or failed: what the load took
    error: str | None = None  # failed: why


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
        self._lock = threading.Lock()  # orders registering a waiter against the load finishing
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._load_started: float | None = None
        self._load_seconds: float | None = None

    def start(self) -> None:
        """Begin loading on the engine thread; returns at once."""
        if self._load_started is None:
            self._load_started = time.monotonic()
            self._thread.start()

    def load_state(self) -> LoadState:
        if self._load_started is None:
            return LoadState("idle")
        if not self._ready.is_set():
            return LoadState("loading", time.monotonic() - self._load_started)
        if self._engine is None:
            return LoadState("failed", self._load_seconds, _describe(self._error))
        return LoadState("ready", self._load_seconds)

    async def wait_ready(self) -> LLMEngine:
        self.start()
        if not self._ready.is_set():
            loop = asyncio.get_running_loop()
            loaded = loop.create_future()
            with self._lock:
                waiting = not self._ready.is_set()
                if waiting:
                    self._waiters.append((loop, loaded))
            if waiting:
                await loaded
        if self._engine is None:
            raise ModelLoadFailed(f"local model failed to load: {_describe(self._error)}") from self._error
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
        label = self.model if isinstance(self.model, str) else self.model.name
        log.info("loading local model %s", label)
        started = time.perf_counter()
        try:
            self._engine = LLMEngine(self.model, self.config)
        except BaseException as exc:  # surfaced to every caller of wait_ready()
            self._error = exc
        finally:
            self._load_seconds = time.perf_counter() - started
            self._loaded()
        engine = self._engine
        if engine is None:
            log.error(
                "local model %s failed to load after %.1f s: %s",
                label,
                self._load_seconds,
                _describe(self._error),
            )
            return
        d = engine.generation_defaults
        log.info(
            "local model %s loaded in %.1f s; defaults from %s: temperature %g, top_p %g, max_tokens %d",
            label,
            self._load_seconds,
            d.source,
            d.temperature,
            d.top_p,
            d.max_tokens,
        )
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
                except ValueError as exc:  # too long for this model or its KV cache
                    failed.append((request_id, RequestError(str(exc), "max_tokens")))
            else:
                engine.abort(command[1])
        return failed

    def _loaded(self) -> None:
        with self._lock:
            self._ready.set()
            waiters, self._waiters = self._waiters, []
        for loop, loaded in waiters:
            with contextlib.suppress(RuntimeError):  # that caller's loop has closed
                loop.call_soon_threadsafe(_resolve, loaded)


def _describe(exc: BaseException | None) -> str:
    return f"{type(exc).__name__}: {exc}" if exc is not None else "unknown error"


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # a waiter that was cancelled (its client left) took its future with it
        future.set_result(None)


def _put_all(batch: list[tuple[asyncio.Queue[Any], Any]]) -> None:
    for queue, item in batch:
        queue.put_nowait(item)
