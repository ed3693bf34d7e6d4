"""An OpenAI-compatible upstream that always writes as long as it is allowed: the worst case a budget
reserves for. Chat completions (JSON or SSE) and legacy completions (JSON).

The answer's content names the output cap the request carried, `max_tokens=<N>` (from
max_completion_tokens or max_tokens; `max_tokens=none` without either), and its usage reports N
completion tokens per choice (without a cap: UNCAPPED_TOKENS for chat, a model left to run on, and
OpenAI's default of 16 for legacy completions), and one prompt token per whitespace-separated word
of the prompt (never more than tiktoken counts), tool and function definitions and response_format
included (as indented JSON), and each image part as OpenAI bills it (85 tokens at detail "low",
otherwise 765: a 1024x1024 image). Each request's body is recorded in `app.state.requests`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.openai_validation import max_tokens_param
from tests.fakes.openai_wire import ApiError, content_text, sse_frame, usage_doc, word_count

UNCAPPED_TOKENS = 100_000
LEGACY_DEFAULT_TOKENS = 16
# OpenAI's price of an image part at detail "low", and at "high"/"auto" for a 1024x1024 image.
IMAGE_TOKENS_LOW, IMAGE_TOKENS = 85, 765


async def chat(request: Request) -> Response:
    body = orjson.loads(await request.body())
    request.app.state.requests.append(body)
    try:
        cap = max_tokens_param(body)
    except ApiError as exc:
        return exc.response()
    n = body.get("n") or 1
    usage = usage_doc(_prompt(body), (cap or UNCAPPED_TOKENS) * n)
    content = f"max_tokens={cap if cap is not None else 'none'}"
    base = {"id": "chatcmpl-verbose", "created": 1, "model": body.get("model", "")}
    finish = "length"
    if not body.get("stream"):
        choices = [
            {"index": i, "message": {"role": "assistant", "content": content}, "finish_reason": finish}
            for i in range(n)
        ]
        doc = {**base, "object": "chat.completion", "choices": choices, "usage": usage}
        return Response(orjson.dumps(doc), media_type="application/json")

    def frame(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return sse_frame({**base, "object": "chat.completion.chunk", "choices": choices, **extra})

    async def events() -> Any:
        for i in range(n):
            delta = {"role": "assistant", "content": content}
            yield frame([{"index": i, "delta": delta, "finish_reason": None}])
            yield frame([{"index": i, "delta": {}, "finish_reason": finish}])
        yield frame([], usage=usage)
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def _prompt(body: dict[str, Any]) -> int:
    messages = body.get("messages") or ()
    words = sum(word_count(content_text(m.get("content"))) for m in messages)
    definitions = {f: body[f] for f in ("tools", "functions", "response_format") if body.get(f)}
    if definitions:
        words += word_count(json.dumps(definitions, indent=1))
    for m in messages:
        for part in m.get("content") if isinstance(m.get("content"), list) else ():
            if part.get("type") == "image_url":
                low = (part.get("image_url") or {}).get("detail") == "low"
                words += IMAGE_TOKENS_LOW if low else IMAGE_TOKENS
    return max(1, words)


async def completions(request: Request) -> Response:
    body = orjson.loads(await request.body())
    request.app.state.requests.append(body)
    cap = body.get("max_tokens")
    usage = usage_doc(max(1, word_count(str(body.get("prompt", "")))), cap or LEGACY_DEFAULT_TOKENS)
    choice = {"index": 0, "text": f"max_tokens={cap or 'none'}", "logprobs": None, "finish_reason": "length"}
    doc = {"id": "cmpl-verbose", "object": "text_completion", "created": 1, "model": body.get("model", "")}
    return Response(orjson.dumps({**doc, "choices": [choice], "usage": usage}), media_type="application/json")


def create_app() -> Starlette:
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
        ]
    )
    app.state.requests = []
    return app
