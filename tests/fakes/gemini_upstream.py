"""A fake Gemini REST API (generateContent / streamGenerateContent / batchEmbedContents, on v1beta and v1).

Honours the shared fault convention in `tests.fakes` (the fault is the model id in the URL path) and
validates requests the way the real API does, answering with Google-style error bodies. Every request
is recorded in `app.state.requests` as `{"path", "model", "method", "query", "headers", "json"}`.
Model ids starting with "cached" report the conversation before the last turn (system instruction
included) as `cachedContentTokenCount`, as Gemini's implicit caching does.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.echo_faults import ECHO_MIDSTREAM, ECHO_STATUS, echoed_credentials
from tests.fakes.partial_stream import PartialStream

CONTENT = "Hello from gemini!"
CONTENT_PIECES = ["Hello ", "from ", "gemini!"]
JSON_CONTENT = '{"ok": true}'
EMBED_DIM = 8
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_FLAKY = re.compile(r"^flaky-(\d+)-")


class _Drop(Exception):
    """Raised after a response has started so uvicorn drops the connection mid-body."""


def google_error(code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"code": code, "message": message, "status": _STATUS.get(code, "UNKNOWN")}}
    if code == 429:
        body["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0s"}]
    return Response(orjson.dumps(body), status_code=code, media_type="application/json", headers=headers)


def _words(text: str) -> int:
    return len(text.split())


def _prompt_words(body: dict[str, Any]) -> int:
    texts = [p.get("text", "") for c in body.get("contents") or [] for p in c.get("parts") or []]
    texts += [p.get("text", "") for p in (body.get("systemInstruction") or {}).get("parts") or []]
    return max(1, sum(_words(t) for t in texts if isinstance(t, str)))


def _validate(body: Any) -> str | None:
    """The message the real API would give for a malformed generateContent body, else None."""
    if not isinstance(body, dict):
        return "Invalid JSON payload received."
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for i, content in enumerate(contents):
        role = content.get("role", "user") if isinstance(content, dict) else None
        if role not in ("user", "model"):
            return f"Please use a valid role: user, model. (contents[{i}].role = {role!r})"
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
    for tool in body.get("tools") or []:
        for decl in tool.get("functionDeclarations") or []:
            unknown = _unknown_schema_key(decl.get("parameters") or {})
            if unknown:
                return f'Invalid JSON payload received. Unknown name "{unknown}"'
    schema = (body.get("generationConfig") or {}).get("responseSchema")
    unknown = _unknown_schema_key(schema or {})
    if unknown:
        return f'Invalid JSON payload received. Unknown name "{unknown}" at generation_config.response_schema'
    system = body.get("systemInstruction")
    if system is not None and "role" in system and system["role"] not in ("user", "system"):
        return "systemInstruction role must be user"
    return None


_REJECTED_SCHEMA_KEYS = ("additionalProperties", "$schema", "$ref", "$defs", "strict", "const")


def _unknown_schema_key(schema: dict[str, Any]) -> str | None:
    for key, value in schema.items():
        if key in _REJECTED_SCHEMA_KEYS:
            return key
        children = value.values() if key == "properties" and isinstance(value, dict) else [value]
        if key == "anyOf" and isinstance(value, list):
            children = value
        for child in children:
            if isinstance(child, dict) and key in ("properties", "items", "anyOf"):
                found = _unknown_schema_key(child)
                if found:
                    return found
    return None


def _tool_result(contents: list[dict[str, Any]]) -> str | None:
    for content in contents:
        for part in content.get("parts") or []:
            if "functionResponse" in part:
                response = part["functionResponse"].get("response") or {}
                value = response.get("content", response)
                return value if isinstance(value, str) else orjson.dumps(value).decode()
    return None


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    """What the model says: {"text": str} or {"call": {name, args}}."""
    contents = body["contents"]
    result = _tool_result(contents)
    if result is not None:
        return {"text": f"The tool said: {result}"}
    mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode", "AUTO")
    declarations = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
    if declarations and mode != "NONE":
        allowed = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get(
            "allowedFunctionNames"
        )
        name = allowed[0] if allowed else declarations[0]["name"]
        return {"call": {"name": name, "args": {"city": "Paris"}}}
    config = body.get("generationConfig") or {}
    if config.get("responseMimeType") == "application/json":
        return {"text": JSON_CONTENT}
    return {"text": CONTENT}


def _usage(body: dict[str, Any], done: bool, model: str = "") -> dict[str, Any]:
    prompt = _prompt_words(body)
    usage: dict[str, Any] = {"promptTokenCount": prompt, "totalTokenCount": prompt}
    if model.startswith("cached"):
        # Implicit caching: everything before the last turn was sent before.
        earlier = (body.get("contents") or [])[:-1]
        usage["cachedContentTokenCount"] = _prompt_words({**body, "contents": earlier}) if earlier else 0
    if done:
        usage.update(candidatesTokenCount=3, totalTokenCount=prompt + 3)
    return usage


def _candidates(n: int, parts: list[dict[str, Any]], finish: str | None) -> list[Any]:
    out = []
    for i in range(n):
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": i}
        if finish:
            candidate["finishReason"] = finish
        out.append(candidate)
    return out


def create_app(*, hang_seconds: float = 60.0) -> Starlette:
    async def record(request: Request, model: str) -> Any:
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw
        app.state.requests.append(
            {
                "path": request.url.path,
                "model": model,
                "method": request.path_params["method"],
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "json": body,
            }
        )
        return body

    async def fault(model: str) -> Response | None:
        if model == "fail-400":
            return google_error(400, "Invalid argument (fault fail-400).")
        if model == "fail-401":
            return google_error(401, "Request had invalid authentication credentials.")
        if model == "fail-429":
            return google_error(429, "Resource has been exhausted (e.g. check quota).", {"Retry-After": "0"})
        if model == "fail-500":
            return google_error(500, "An internal error has occurred.")
        if model == "hang":
            try:
                await asyncio.sleep(hang_seconds)
            except asyncio.CancelledError:  # the server is shutting down and nobody is listening
                return google_error(503, "The service is currently unavailable.")
        flaky = _FLAKY.match(model)
        if flaky:
            seen = app.state.calls.get(model, 0)
            app.state.calls[model] = seen + 1
            if seen < int(flaky.group(1)):
                return google_error(500, f"An internal error has occurred (flaky call {seen + 1}).")
        return None

    async def dispatch(request: Request) -> Response:
        spec = request.path_params["spec"]
        model, _, method = spec.partition(":")
        request.path_params["method"] = method
        body = await record(request, model)
        if not request.headers.get("x-goog-api-key") and not request.query_params.get("key"):
            return google_error(
                403,
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        if method not in ("generateContent", "streamGenerateContent", "batchEmbedContents"):
            return google_error(404, f"Method {method!r} not found.")
        early = await fault(model)
        if early is not None:
            return early
        echo = echoed_credentials(request.headers, request.query_params)
        if model in ECHO_STATUS:
            return google_error(ECHO_STATUS[model], echo)
        if method == "batchEmbedContents":
            return _embed(model, body)
        problem = _validate(body)
        if problem:
            return google_error(400, problem)
        if method == "generateContent":
            if model == "die-midstream":
                return _dropping_response([b'{"candidates": [{"content": '])
            return _generate(model, body)
        if request.query_params.get("alt") != "sse":
            # Without alt=sse the real endpoint returns one JSON array at the end: useless for streaming.
            return Response(orjson.dumps([_generate_doc(model, body)]), media_type="application/json")
        if model == "stall-midstream":
            return PartialStream([frame async for frame in _stream(model, body)][:2], stall=True)
        if model == ECHO_MIDSTREAM:
            frames = [frame async for frame in _stream(model, body)][:2]
            failure = _sse({"error": {"code": 500, "message": echo, "status": "INTERNAL"}})
            return StreamingResponse(iter([*frames, failure]), media_type="text/event-stream")
        return StreamingResponse(_stream(model, body), media_type="text/event-stream")

    # The real API answers on both versions; google-genai 3.x asks /v1 by default, our adapter /v1beta.
    routes = [Route(f"/{v}/models/{{spec:path}}", dispatch, methods=["POST"]) for v in ("v1beta", "v1")]
    app = Starlette(routes=routes)
    app.state.requests = []
    app.state.calls = {}
    return app


def _generate_doc(model: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = _answer(body)
    n = int((body.get("generationConfig") or {}).get("candidateCount") or 1)
    parts = [{"functionCall": answer["call"]}] if "call" in answer else [{"text": answer["text"]}]
    return {
        "candidates": _candidates(n, parts, "STOP"),
        "usageMetadata": _usage(body, True, model),
        "modelVersion": model,
        "responseId": hashlib.sha1(orjson.dumps(body)).hexdigest()[:20],
    }


def _generate(model: str, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(_generate_doc(model, body)), media_type="application/json")


def _sse(doc: dict[str, Any]) -> bytes:
    # The real API frames events with CRLF.
    return b"data: " + orjson.dumps(doc) + b"\r\n\r\n"


async def _stream(model: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
    answer = _answer(body)
    n = int((body.get("generationConfig") or {}).get("candidateCount") or 1)
    meta = {"modelVersion": model, "responseId": "fake-stream"}
    if "call" in answer:
        doc = {
            "candidates": _candidates(n, [{"functionCall": answer["call"]}], "STOP"),
            "usageMetadata": _usage(body, True, model),
            **meta,
        }
        yield _sse(doc)
        return
    text = answer["text"]
    pieces = CONTENT_PIECES if text == CONTENT else [text[: len(text) // 2], text[len(text) // 2 :], ""]
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        doc = {
            "candidates": _candidates(n, [{"text": piece}], "STOP" if last else None),
            "usageMetadata": _usage(body, last, model),
            **meta,
        }
        yield _sse(doc)
        if model == "die-midstream" and i == 1:
            await asyncio.sleep(0.05)
            raise _Drop("die-midstream")
        await asyncio.sleep(0)


def _dropping_response(pieces: list[bytes]) -> StreamingResponse:
    async def gen() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece
        raise _Drop("die-midstream")

    return StreamingResponse(gen(), media_type="application/json")


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((b - 128) / 128, 6) for b in digest[:EMBED_DIM]]


def _embed(model: str, body: Any) -> Response:
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        return google_error(400, "* BatchEmbedContentsRequest.requests: requests is not specified")
    vectors = []
    for i, item in enumerate(requests):
        if item.get("model") != f"models/{model}":
            return google_error(
                400, f"* BatchEmbedContentsRequest.requests[{i}].model: model must match the batch model"
            )
        parts = (item.get("content") or {}).get("parts") or []
        text = "".join(p.get("text", "") for p in parts)
        if not text:
            return google_error(400, f"* BatchEmbedContentsRequest.requests[{i}].content: empty content")
        values = _vector(text)
        dim = item.get("outputDimensionality")
        vectors.append({"values": values[:dim] if dim else values})
    return Response(orjson.dumps({"embeddings": vectors}), media_type="application/json")
