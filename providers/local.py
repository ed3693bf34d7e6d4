"""The bundled torch engine as a gateway provider, running in this process on its own thread.

`deployment.model` is "smollm2" / "smollm2-135m-instruct" (the bundled GGUF) or a path to a GGUF file or
a safetensors folder. Engine knobs come from `deployment.options` (see local_backend.config.EngineConfig:
kv_cache_mb, device, dtype, max_num_seqs / max_batch, max_model_len, num_threads, enforce_eager,
cpu_kernels...); num_threads defaults to half the cores; `preload: true` starts loading when the
provider is built instead of on the first request.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from local_backend.async_engine import AsyncEngine, EngineDead
from local_backend.config import EngineConfig
from local_backend.openai_api import OpenAIFrontend, RequestError
from providers.base import Chunk, Endpoint, UpstreamCall, UpstreamError, UpstreamResponse, http_error
from providers.deployment import Deployment


class LocalProvider:
    native_text = True

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        options = dict(deployment.options)
        preload = bool(options.pop("preload", False))
        # In process, torch shares the cores with the gateway's event loop; OpenMP threads that outnumber
        # the free cores spin at every op's barrier, which costs far more than a thread gains.
        options.setdefault("num_threads", max(1, (os.cpu_count() or 2) // 2))
        self._engine = AsyncEngine(deployment.model, EngineConfig.from_options(options))
        self._frontend = OpenAIFrontend(self._engine, deployment.model)
        if preload:
            self._engine.start()

    async def complete(self, call: UpstreamCall) -> UpstreamResponse:
        try:
            data = await self._frontend.complete(call.body, text=call.endpoint is Endpoint.TEXT)
        except RequestError as exc:
            raise http_error(400, str(exc), param=exc.param) from exc
        except EngineDead as exc:
            raise UpstreamError(503, str(exc), retryable=True) from exc
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
            raise UpstreamError(503, str(exc), retryable=True) from exc
        finally:
            await chunks.aclose()

    async def embed(self, call: UpstreamCall) -> UpstreamResponse:
        raise http_error(400, f"{self.deployment.name} is a local chat model and serves no embeddings")

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._engine.shutdown)
