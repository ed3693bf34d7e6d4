"""A `provider: local` deployment served by an engine process of its own (`serve --workers N`).

Every worker reaches the one engine over loopback, through the OpenAI-compatible adapter: the engine
process runs local_backend.server, whose answers come from the same OpenAIFrontend as LocalProvider's
(the model's own sampling defaults, 400 for a request it cannot serve). Readiness: the engine's
/health answers once the model has loaded (503 with the reason if the load failed); until then this
worker's /health/ready says the model is loading.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from providers.base import Chunk, UpstreamCall, UpstreamError, UpstreamResponse, http_error
from providers.deployment import Deployment
from providers.openai_compatible import OpenAICompatibleProvider


class RemoteLocalProvider:
    native_text = True

    def __init__(self, deployment: Deployment, base_url: str) -> None:
        self.deployment = deployment
        self._base = base_url.rstrip("/")
        wire = deployment.model_copy(update={"provider": "openai_compatible", "api_base": self._base + "/v1"})
        self._upstream = OpenAICompatibleProvider(wire)
        self._started: float | None = None
        self._ready_s: float | None = None
        self._error: str | None = None
        self._watch: asyncio.Task[None] | None = None

    def start_loading(self) -> None:
        """Waits (on this worker's loop) for the engine process to report its model loaded."""
        self._started = time.monotonic()
        self._watch = asyncio.get_running_loop().create_task(self._wait_loaded())

    async def _wait_loaded(self) -> None:
        # No read timeout: the engine answers /health when its load ends, however long that takes; a
        # dead engine process closes the connection.
        timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self._base + "/health") as resp,
            ):
                body = await resp.read()
        except (aiohttp.ClientError, OSError) as exc:
            self._error = f"local engine at {self._base} is not running ({type(exc).__name__})"
            return
        if resp.status == 200:
            self._ready_s = time.monotonic() - (self._started or time.monotonic())
            return
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
            self._error = str(orjson.loads(body)["error"]["message"])
        self._error = self._error or f"local engine at {self._base} answered /health with {resp.status}"

    def load_state(self) -> dict[str, Any]:
        """This model's entry in /health/ready's `checks.models.local`."""
        if self._error is not None:
            return {"state": "failed", "error": self._error, "engine": self._base}
        if self._ready_s is not None:
            return {"state": "ok", "load_s": round(self._ready_s, 1), "engine": self._base}
        if self._started is None:
            return {"state": "not_started", "engine": self._base}
        return {
            "state": "loading",
            "elapsed_s": round(time.monotonic() - self._started, 1),
            "engine": self._base,
        }

    def _check_loaded(self) -> None:
        # As in process: once the load has failed, every request gets 503 model_load_failed at once
        # (retryable, so a route moves on to its next candidate).
        if self._error is not None:
            raise UpstreamError(
                503, f"{self.deployment.name}: {self._error}", code="model_load_failed", retryable=True
            )

    async def complete(self, call: UpstreamCall) -> UpstreamResponse:
        self._check_loaded()
        return await self._upstream.complete(call)

    async def stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]:
        self._check_loaded()
        chunks = self._upstream.stream(call)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    async def embed(self, call: UpstreamCall) -> UpstreamResponse:
        raise http_error(400, f"{self.deployment.name} is a local chat model and serves no embeddings")

    async def aclose(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self._upstream.aclose()
