"""The bundled torch engine as a gateway provider, running in this process on its own thread.

`deployment.model` is "smollm2" / "smollm2-135m-instruct" (the bundled GGUF) or a path to a GGUF file or
a safetensors folder. Engine knobs come from `deployment.options` (see local_backend.config.EngineConfig:
kv_cache_mb, device, dtype, max_num_seqs / max_batch, max_model_len, num_threads, enforce_eager,
cpu_kernels...); num_threads defaults to half the cores.

The gateway calls `start_loading()` at start-up and reports `load_state()` in /health/ready (not_ready
until the model has loaded). A request that arrives meanwhile waits for the load; once a load has
failed, every request gets 503 `model_load_failed` with the reason, and readiness shows it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from local_backend.async_engine import AsyncEngine, EngineDead, ModelLoadFailed
from local_backend.config import EngineConfig
from local_backend.openai_api import OpenAIFrontend, RequestError
from providers.base import Chunk, Endpoint, UpstreamCall, UpstreamError, UpstreamResponse, http_error
from providers.deployment import Deployment

log = logging.getLogger("switchyard.local")


def engine_options(deployment: Deployment) -> dict[str, Any]:
    """The EngineConfig fields a local deployment's `options` give, in this process or an engine
    process of its own (`serve --workers N`)."""
    options = dict(deployment.options)
    # Read by the gateway (pricing's output cap), not engine knobs. `preload` is what loading at
    # start was called before every local model did so: accepted, nothing to do.
    options.pop("max_output_tokens", None)
    if options.pop("preload", None) is not None:
        log.warning("%s: options.preload is not needed: local models load at start", deployment.name)
    # Torch shares the cores with the gateway's event loops; OpenMP threads that outnumber the free
    # cores spin at every op's barrier, which costs far more than a thread gains.
    options.setdefault("num_threads", max(1, (os.cpu_count() or 2) // 2))
    return options


class LocalProvider:
    native_text = True

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self._engine = AsyncEngine(deployment.model, EngineConfig.from_options(engine_options(deployment)))
        self._frontend = OpenAIFrontend(self._engine, deployment.model)

    def start_loading(self) -> None:
        """Load on the engine's thread; returns at once."""
        self._engine.start()

    def load_state(self) -> dict[str, Any]:
        """This model's entry in /health/ready's `checks.models.local`."""
        load = self._engine.load_state()
        if load.state == "ready":
            return {"state": "ok", "load_s": round(load.seconds or 0.0, 1)}
        if load.state == "failed":
            return {"state": "failed", "error": load.error}
        if load.state == "loading":
            return {"state": "loading", "elapsed_s": round(load.seconds or 0.0, 1)}
        return {"state": "not_started"}

    def _unavailable(self, exc: EngineDead) -> UpstreamError:
        # Retryable so a route moves on to its next candidate; the client sees 503 with the reason.
        code = "model_load_failed" if isinstance(exc, ModelLoadFailed) else None
        return UpstreamError(503, f"{self.deployment.name}: {exc}", code=code, retryable=True)

    async def complete(self, call: UpstreamCall) -> UpstreamResponse:
        try:
            data = await self._frontend.complete(call.body, text=call.endpoint is Endpoint.TEXT)
        except RequestError as exc:
            raise http_error(400, str(exc), param=exc.param) from exc
        except EngineDead as exc:
            raise self._unavailable(exc) from exc
        return UpstreamResponse.from_data(data)

    async def stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]:
        chunks = self._frontend.stream(call.body, text=call.endpoint is Endpoint.TEXT)
        started = False
        try:
            async for data in chunks:
                started = True
                yield Chunk.from_data(data)
        except RequestError as exc:
            raise http_error(400, str(exc), param=exc.param) from exc
        except EngineDead as exc:
            if started:
                raise UpstreamError(502, f"upstream stream interrupted: {exc}", retryable=True) from exc
            raise self._unavailable(exc) from exc
        finally:
            await chunks.aclose()

    async def embed(self, call: UpstreamCall) -> UpstreamResponse:
        raise http_error(400, f"{self.deployment.name} is a local chat model and serves no embeddings")

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._engine.shutdown)
