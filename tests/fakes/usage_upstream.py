"""An OpenAI-compatible upstream that answers well but reports usage that is not token counts.

The model id picks the usage document: `usage-text` (strings), `usage-negative` (-1,000,000 prompt
tokens), `usage-huge` (2^63 - 1), anything else a correct one. `chunk-garbage` streams an event whose
`choices` is a string after its first content. Chat completions only, JSON or SSE.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

CONTENT = "Four words, no more."
USAGES: dict[str, dict[str, Any]] = {
    "usage-text": {"prompt_tokens": "lots", "completion_tokens": "many", "total_tokens": "all"},
    "usage-negative": {"prompt_tokens": -1_000_000, "completion_tokens": -5, "total_tokens": -1_000_005},
    "usage-huge": {"prompt_tokens": 2**63 - 1, "completion_tokens": 2**63 - 1, "total_tokens": 2**63 - 1},
}
GOOD = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}


async def chat(request: Request) -> Response:
    body = orjson.loads(await request.body())
    model = body.get("model", "")
    usage = USAGES.get(model, GOOD)
    base = {"id": "chatcmpl-usage", "created": 1, "model": model}
    if not body.get("stream"):
        message = {"role": "assistant", "content": CONTENT}
        doc = {**base, "object": "chat.completion", "usage": usage}
        doc["choices"] = [{"index": 0, "message": message, "finish_reason": "stop"}]
        return Response(orjson.dumps(doc), media_type="application/json")

    def frame(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        doc = {**base, "object": "chat.completion.chunk", "choices": choices, **extra}
        return b"data: " + orjson.dumps(doc) + b"\n\n"

    async def events() -> Any:
        yield frame([{"index": 0, "delta": {"role": "assistant", "content": CONTENT}, "finish_reason": None}])
        if model == "chunk-garbage":
            yield frame("nonsense")  # type: ignore[arg-type]
        yield frame([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        yield frame([], usage=usage)
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def create_app() -> Starlette:
    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
