"""A fake OpenAI-compatible upstream on the real wire format (see `tests.fakes` for the fault convention).

Endpoints: `POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/embeddings`, `GET /v1/models`
(and `GET /v1/models/{id}`), `POST /v1/responses` (`openai_responses`). Every request is recorded in
`app.state.requests` as a `RecordedRequest` `(path, headers, body)` (headers lower-cased, body the
parsed JSON or None), appended before anything is validated, so tests can check what was forwarded.

Usage from a test (`from tests.fakes.server import ServerThread`):

    with ServerThread(create_app()) as srv:
        api_base = srv.url + "/v1"        # what a Deployment / the openai SDK is pointed at
        ...
        srv.app.state.requests[-1].body   # the last request received

Normal answers are deterministic: content "Hello from openai!" (3 chunks when streamed), usage
prompt_tokens = whitespace-separated words in all message text (at least 1), completion_tokens = 3;
`cached-*` models report all messages but the last as cached_tokens (OpenAI's automatic caching).
Models named `conf-<p>...` answer with logprobs of a chosen confidence (`tests.fakes.confidence`).

The pieces live beside it: `openai_wire` (JSON/SSE framing, error body, usage, logprobs, embeddings),
`openai_validation` (the 400s the real API answers) and `openai_faults` (the fault convention).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from functools import partial
from typing import Any, NamedTuple

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.confidence import Confident
from tests.fakes.echo_faults import echoed_credentials
from tests.fakes.openai_faults import dying_body, inject_fault
from tests.fakes.openai_responses import responses
from tests.fakes.openai_validation import (
    check_auth,
    encoding_format,
    int_param,
    max_tokens_param,
    require_model,
    stream_usage,
    validate_chat,
    validate_input,
    validate_prompt,
)
from tests.fakes.openai_wire import (
    DEFAULT_EMBEDDING_DIM,
    SSE_DONE,
    ApiError,
    cached_prefix_tokens,
    chat_answer,
    chat_logprobs,
    content_text,
    embeddings_doc,
    iterate_frames,
    json_response,
    model_doc,
    split3,
    sse_frame,
    text_logprobs,
    usage_doc,
    word_count,
)
from tests.fakes.openai_wire import embedding_vector as embedding_vector  # re-exported: tests import it
from tests.fakes.partial_stream import PartialStream

PROVIDER = "openai"
GREETING = f"Hello from {PROVIDER}!"
COMPLETION_TOKENS = 3
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo-instruct", "text-embedding-3-small")


class RecordedRequest(NamedTuple):
    path: str
    headers: dict[str, str]
    body: Any


class _Fake:
    def __init__(self, hang_seconds: float, models: Iterable[str]) -> None:
        self.hang_seconds = hang_seconds
        self.models = list(models)
        self.requests: list[RecordedRequest] = []
        self.flaky_counts: dict[str, int] = {}
        self._ids = 0

    def next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-fake{self._ids:06d}"

    # ---- plumbing

    async def _read(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
            self.requests.append(RecordedRequest(request.url.path, dict(request.headers), None))
            raise ApiError(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
                "sent was not valid JSON.)",
            ) from None
        self.requests.append(RecordedRequest(request.url.path, dict(request.headers), body))
        check_auth(request)
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid body: expected a JSON object.", code="invalid_type")
        return body

    @staticmethod
    def _meta(body: dict[str, Any]) -> tuple[int, str]:
        seed = body.get("seed")
        fingerprint = f"fp_{seed}" if seed is not None else "fp_fake"
        return int(time.time()), fingerprint

    # ---- chat

    async def chat(self, request: Request) -> Response:
        try:
            body = await self._read(request)
            model = require_model(body)
            messages = validate_chat(body)
            n = int_param(body, "n", 1, 128, 1)
            top = int_param(body, "top_logprobs", 0, 20, 0)
            include_usage = stream_usage(body)
            max_tokens = max_tokens_param(body)
            fault = await inject_fault(model, request, self.flaky_counts, self.hang_seconds)
        except ApiError as e:
            return e.response()

        words = [word_count(content_text(m.get("content"))) for m in messages]
        prompt_tokens, cached = max(1, sum(words)), cached_prefix_tokens(model, words)
        answer = chat_answer(body, messages)
        created, fingerprint = self._meta(body)
        cid = self.next_id("chatcmpl")
        want_logprobs = bool(body.get("logprobs"))
        stream = bool(body.get("stream"))
        confident = Confident.of(model, content_text(messages[-1].get("content")))
        logprobs = confident.logprobs if confident else chat_logprobs

        finish = "stop"
        pieces: list[str] = []
        completion_tokens = COMPLETION_TOKENS
        if "content" in answer:
            pieces = confident.pieces() if confident else split3(answer["content"])
            completion_tokens = len(pieces) if confident else completion_tokens
            if max_tokens is not None and max_tokens < len(pieces):
                pieces, finish, completion_tokens = pieces[:max_tokens], "length", max_tokens
        else:
            finish = "tool_calls"
        base = {"id": cid, "created": created, "model": model, "system_fingerprint": fingerprint}

        if not stream:
            if fault == "die":
                partial = orjson.dumps({**base, "object": "chat.completion"})[:-1] + b', "choices": [{"ind'
                return StreamingResponse(dying_body(partial), media_type="application/json")
            choices = []
            for i in range(n):
                message: dict[str, Any] = {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "annotations": [],
                }
                if "content" in answer:
                    message["content"] = "".join(pieces)
                else:
                    name, args = answer["tool"]
                    message["tool_calls"] = [
                        {
                            "id": f"call_{cid[-6:]}{i}",
                            "type": "function",
                            "function": {"name": name, "arguments": args},
                        }
                    ]
                choices.append(
                    {
                        "index": i,
                        "message": message,
                        "logprobs": logprobs(pieces, top) if want_logprobs else None,
                        "finish_reason": finish,
                    }
                )
            data = {
                **base,
                "object": "chat.completion",
                "choices": choices,
                "usage": usage_doc(prompt_tokens, completion_tokens * n, cached),
                "service_tier": "default",
            }
            return json_response(data)

        def chunk(choices: list[dict[str, Any]], usage: Any = ...) -> bytes:
            data: dict[str, Any] = {**base, "object": "chat.completion.chunk", "choices": choices}
            if include_usage:
                data["usage"] = None if usage is ... else usage
            return sse_frame(data)

        def delta(
            i: int, d: dict[str, Any], *, logprobs: Any = None, finish_reason: str | None = None
        ) -> dict:
            return {"index": i, "delta": d, "logprobs": logprobs, "finish_reason": finish_reason}

        frames: list[bytes] = []
        for i in range(n):
            if "content" in answer:
                frames.append(chunk([delta(i, {"role": "assistant", "content": "", "refusal": None})]))
            else:
                name, args = answer["tool"]
                head = {
                    "index": 0,
                    "id": f"call_{cid[-6:]}{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                frames.append(chunk([delta(i, {"role": "assistant", "content": None, "tool_calls": [head]})]))
        if "content" in answer:
            for k, piece in enumerate(pieces):
                for i in range(n):
                    lp = logprobs([piece], top, start=k) if want_logprobs else None
                    frames.append(chunk([delta(i, {"content": piece}, logprobs=lp)]))
        else:
            for arg_piece in split3(answer["tool"][1]):
                for i in range(n):
                    frames.append(
                        chunk(
                            [delta(i, {"tool_calls": [{"index": 0, "function": {"arguments": arg_piece}}]})]
                        )
                    )
        if fault == "die":
            # role chunk(s) + two content chunks, then the connection drops
            return StreamingResponse(
                dying_body(b"".join(frames[: n + 2 * n])), media_type="text/event-stream"
            )
        if fault == "stall":
            return PartialStream(frames[: n + 2 * n], stall=True)
        if fault == "echo":
            failure = sse_frame(
                {"error": {"message": echoed_credentials(request.headers), "type": "server_error"}}
            )
            return StreamingResponse(
                iterate_frames([*frames[: n + 2 * n], failure]), media_type="text/event-stream"
            )
        for i in range(n):
            frames.append(chunk([delta(i, {}, finish_reason=finish)]))
        if include_usage:
            frames.append(chunk([], usage=usage_doc(prompt_tokens, completion_tokens * n, cached)))
        frames.append(SSE_DONE)
        sent = confident.frames(frames) if confident else iterate_frames(frames)
        return StreamingResponse(sent, media_type="text/event-stream")

    # ---- legacy completions

    async def completions(self, request: Request) -> Response:
        try:
            body = await self._read(request)
            model = require_model(body)
            prompts = validate_prompt(body)
            n = int_param(body, "n", 1, 128, 1)
            top = int_param(body, "logprobs", 0, 5, 0) if body.get("logprobs") is not None else None
            include_usage = stream_usage(body)
            max_tokens = max_tokens_param(body)
            fault = await inject_fault(model, request, self.flaky_counts, self.hang_seconds)
        except ApiError as e:
            return e.response()

        prompt_tokens = max(1, sum(word_count(p) for p in prompts))
        created, fingerprint = self._meta(body)
        cid = self.next_id("cmpl")
        pieces = split3(GREETING)
        finish, completion_tokens = "stop", COMPLETION_TOKENS
        if max_tokens is not None and max_tokens < len(pieces):
            pieces, finish, completion_tokens = pieces[:max_tokens], "length", max_tokens
        echo = bool(body.get("echo"))
        total_choices = len(prompts) * n
        base = {"id": cid, "created": created, "model": model, "system_fingerprint": fingerprint}
        usage = usage_doc(prompt_tokens, completion_tokens * total_choices)
        usage.pop("prompt_tokens_details")
        usage.pop("completion_tokens_details")

        if not body.get("stream"):
            if fault == "die":
                partial = orjson.dumps({**base, "object": "text_completion"})[:-1] + b', "choices": [{"te'
                return StreamingResponse(dying_body(partial), media_type="application/json")
            choices = []
            for p, prompt in enumerate(prompts):
                for i in range(n):
                    prefix = prompt if echo else ""
                    choices.append(
                        {
                            "text": prefix + "".join(pieces),
                            "index": p * n + i,
                            "logprobs": text_logprobs(pieces, top or 1, offset=len(prefix))
                            if top is not None
                            else None,
                            "finish_reason": finish,
                        }
                    )
            return json_response({**base, "object": "text_completion", "choices": choices, "usage": usage})

        def chunk(choices: list[dict[str, Any]], use: Any = ...) -> bytes:
            data: dict[str, Any] = {**base, "object": "text_completion", "choices": choices}
            if include_usage:
                data["usage"] = None if use is ... else use
            return sse_frame(data)

        frames: list[bytes] = []
        for k, piece in enumerate(pieces):
            for idx in range(total_choices):
                lp = text_logprobs([piece], top or 1, start=k) if top is not None else None
                text = (prompts[idx // n] + piece) if echo and k == 0 else piece
                frames.append(chunk([{"text": text, "index": idx, "logprobs": lp, "finish_reason": None}]))
        if fault == "die":
            return StreamingResponse(
                dying_body(b"".join(frames[: 2 * total_choices])), media_type="text/event-stream"
            )
        for idx in range(total_choices):
            frames.append(chunk([{"text": "", "index": idx, "logprobs": None, "finish_reason": finish}]))
        if include_usage:
            frames.append(chunk([], use=usage))
        frames.append(SSE_DONE)
        return StreamingResponse(iterate_frames(frames), media_type="text/event-stream")

    # ---- embeddings

    async def embeddings(self, request: Request) -> Response:
        try:
            body = await self._read(request)
            model = require_model(body)
            inputs = validate_input(body)
            dim = int_param(body, "dimensions", 1, 4096, DEFAULT_EMBEDDING_DIM)
            fmt = encoding_format(body)
            fault = await inject_fault(model, request, self.flaky_counts, self.hang_seconds)
        except ApiError as e:
            return e.response()
        doc = embeddings_doc(model, inputs, dim, fmt)
        if fault == "die":
            return StreamingResponse(dying_body(orjson.dumps(doc)[:40]), media_type="application/json")
        return json_response(doc)

    # ---- models

    async def list_models(self, request: Request) -> Response:
        self.requests.append(RecordedRequest(request.url.path, dict(request.headers), None))
        try:
            check_auth(request)
        except ApiError as e:
            return e.response()
        return json_response({"object": "list", "data": [model_doc(m) for m in self.models]})

    async def get_model(self, request: Request) -> Response:
        self.requests.append(RecordedRequest(request.url.path, dict(request.headers), None))
        try:
            check_auth(request)
        except ApiError as e:
            return e.response()
        model_id = request.path_params["model"]
        if model_id not in self.models:
            return ApiError(
                404, f"The model '{model_id}' does not exist", param="model", code="model_not_found"
            ).response()
        return json_response(model_doc(model_id))


def create_app(*, hang_seconds: float = 60.0, models: Iterable[str] = DEFAULT_MODELS) -> Starlette:
    """The fake OpenAI upstream. `app.state.requests` lists every request received (RecordedRequest),
    `app.state.flaky_counts` the calls seen per flaky-N-* model id, `app.state.fake` the implementation."""
    fake = _Fake(hang_seconds, models)
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", fake.chat, methods=["POST"]),
            Route("/v1/completions", fake.completions, methods=["POST"]),
            Route("/v1/embeddings", fake.embeddings, methods=["POST"]),
            Route("/v1/responses", partial(responses, fake=fake, greeting=GREETING), methods=["POST"]),
            Route("/v1/models", fake.list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", fake.get_model, methods=["GET"]),
        ]
    )
    app.state.fake = fake
    app.state.requests = fake.requests
    app.state.flaky_counts = fake.flaky_counts
    return app
