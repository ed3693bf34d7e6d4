"""`switchyard local serve`: the engine behind its own OpenAI-compatible HTTP server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from local_backend.async_engine import AsyncEngine, EngineDead
from local_backend.config import EngineConfig
from local_backend.openai_api import OpenAIFrontend, RequestError


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(status: int, message: str, kind: str, param: str | None = None) -> Response:
    return _json({"error": {"message": message, "type": kind, "param": param, "code": None}}, status)


def create_app(model: str, config: EngineConfig, served_name: str | None = None) -> FastAPI:
    engine = AsyncEngine(model, config)
    name = served_name or config.served_model_name or model
    frontend = OpenAIFrontend(engine, name)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engine.start()
        yield
        engine.shutdown()

    app = FastAPI(title="Switchyard local engine", lifespan=lifespan)

    async def handle(request: Request, text: bool) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "body is not valid JSON", "invalid_request_error")
        if not isinstance(body, dict):
            return _error(400, "body must be a JSON object", "invalid_request_error")
        try:
            if not body.get("stream"):
                return _json(await frontend.complete(body, text))
            chunks = frontend.stream(body, text)
            first = await anext(chunks)  # errors before the first byte still get a status code
        except RequestError as exc:
            return _error(400, str(exc), "invalid_request_error", exc.param)
        except EngineDead as exc:
            return _error(503, str(exc), "api_error")

        async def sse() -> AsyncIterator[bytes]:
            try:
                yield b"data: " + orjson.dumps(first) + b"\n\n"
                async for chunk in chunks:
                    yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            except EngineDead as exc:
                yield (
                    b"data: " + orjson.dumps({"error": {"message": str(exc), "type": "api_error"}}) + b"\n\n"
                )
            finally:
                await chunks.aclose()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await handle(request, text=False)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await handle(request, text=True)

    @app.get("/v1/models")
    async def models() -> Response:
        return _json(
            {
                "object": "list",
                "data": [
                    {
                        "id": name,
                        "object": "model",
                        "created": int(time.time()),
                        "owned_by": "switchyard-local",
                    }
                ],
            }
        )

    @app.get("/health")
    async def health() -> Response:
        try:
            await engine.wait_ready()
        except EngineDead as exc:
            return _error(503, str(exc), "api_error")
        return _json({"status": "ok"})

    return app


def run_server(model: str, host: str = "127.0.0.1", port: int = 8001, **engine_options: Any) -> None:
    """Serve until interrupted. engine_options are EngineConfig fields (kv_cache_mb, device, dtype...)."""
    served = engine_options.pop("served_model_name", None)
    config = EngineConfig.from_options(engine_options)
    uvicorn.run(create_app(model, config, served), host=host, port=port, log_level="info")
