"""A fake OpenAI-compatible upstream on the real wire format (see `tests.fakes` for the fault convention).

Endpoints: `POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/embeddings`, `GET /v1/models`
(and `GET /v1/models/{id}`). Every request is recorded in `app.state.requests` as a `RecordedRequest`
`(path, headers, body)` (headers lower-cased, body the parsed JSON or None), appended before anything
is validated, so tests can check exactly what an adapter forwarded.

Usage from a test:

    from tests.fakes.openai_upstream import create_app
    from tests.fakes.server import ServerThread

    with ServerThread(create_app()) as srv:
        api_base = srv.url + "/v1"        # what a Deployment / the openai SDK is pointed at
        ...
        srv.app.state.requests[-1].body   # the last request received

Normal answers are deterministic: content "Hello from openai!" (3 chunks when streamed), usage
prompt_tokens = whitespace-separated words in all message text (at least 1), completion_tokens = 3.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import re
import struct
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, NamedTuple

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.partial_stream import PartialStream

PROVIDER = "openai"
GREETING = f"Hello from {PROVIDER}!"
COMPLETION_TOKENS = 3
DEFAULT_EMBEDDING_DIM = 8
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo-instruct", "text-embedding-3-small")
VALID_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_FLAKY = re.compile(r"^flaky-(\d+)-")


class RecordedRequest(NamedTuple):
    path: str
    headers: dict[str, str]
    body: Any


class FakeStreamDied(RuntimeError):
    """Raised inside a streaming body to drop the connection mid-response (die-midstream)."""


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def response(self) -> Response:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return _json(body, status=self.status, headers=self.headers)


# --------------------------------------------------------------------------- helpers


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def _sse(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


_DONE = b"data: [DONE]\n\n"


def _words(text: str) -> int:
    return len(text.split())


def _content_text(content: Any) -> str:
    """Text of an OpenAI message content: a string or a list of parts (text parts only)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return " ".join(parts)
    return ""


def split3(text: str) -> list[str]:
    """Split `text` into (up to) 3 pieces that concatenate back to it, on word boundaries if possible."""
    pieces = re.findall(r"\s*\S+", text)
    if len(pieces) >= 3:
        size = math.ceil(len(pieces) / 3)
        out = ["".join(pieces[i : i + size]) for i in range(0, len(pieces), size)]
        if len(out) == 2:  # e.g. 4 words: 2 + 2 -> rebalance to 3 pieces
            out = [pieces[0], "".join(pieces[1:-1]), pieces[-1]]
    else:
        size = max(1, math.ceil(len(text) / 3))
        out = [text[i : i + size] for i in range(0, len(text), size)]
    if not out:
        out = [""]
    assert "".join(out) == text
    return out


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _token_logprob(token: str, rank_offset: int, top: int) -> dict[str, Any]:
    logprob = -0.01 * (rank_offset + 1)
    alternatives = [
        {"token": token, "logprob": logprob, "bytes": list(token.encode())},
        *(
            {"token": f"{token}~{k}", "logprob": logprob - 1.0 - k, "bytes": list(f"{token}~{k}".encode())}
            for k in range(1, top)
        ),
    ]
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": alternatives[:top],
    }


def _chat_logprobs(tokens: list[str], top: int, start: int = 0) -> dict[str, Any]:
    return {"content": [_token_logprob(t, start + i, top) for i, t in enumerate(tokens)], "refusal": None}


def _text_logprobs(tokens: list[str], top: int, start: int = 0, offset: int = 0) -> dict[str, Any]:
    offsets = []
    pos = offset
    for t in tokens:
        offsets.append(pos)
        pos += len(t)
    return {
        "tokens": tokens,
        "token_logprobs": [-0.01 * (start + i + 1) for i in range(len(tokens))],
        "top_logprobs": [
            {t: -0.01 * (start + i + 1), **{f"{t}~{k}": -1.0 - k for k in range(1, top)}}
            for i, t in enumerate(tokens)
        ],
        "text_offset": offsets,
    }


def _int_param(body: dict[str, Any], name: str, lo: int, hi: int, default: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(
            400, f"Invalid type for '{name}': expected an integer.", param=name, code="invalid_type"
        )
    if not lo <= value <= hi:
        raise ApiError(
            400,
            f"Invalid '{name}': integer out of range. Expected a value between {lo} and {hi}, got {value}.",
            param=name,
            code="integer_out_of_range" if value > hi else "integer_below_min_value",
        )
    return value


def _max_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is not None:
            return _int_param(body, name, 1, 1_000_000, 1)
    return None


def _stream_usage(body: dict[str, Any]) -> bool:
    opts = body.get("stream_options")
    if opts is None:
        return False
    if not body.get("stream"):
        raise ApiError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code=None,
        )
    if not isinstance(opts, dict):
        raise ApiError(400, "Invalid type for 'stream_options': expected an object.", param="stream_options")
    return bool(opts.get("include_usage"))


# --------------------------------------------------------------------------- the app


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
        self._check_auth(request)
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid body: expected a JSON object.", code="invalid_type")
        return body

    @staticmethod
    def _check_auth(request: Request) -> None:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code=None,
            )

    @staticmethod
    def _model(body: dict[str, Any]) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "you must provide a model parameter", param=None, code=None)
        return model

    async def _fault(self, model: str, request: Request) -> str | None:
        """Raise the fault the model id asks for; return "die" for die-midstream, "stall" for
        stall-midstream, else None."""
        if model == "fail-400":
            raise ApiError(400, "Fake upstream: bad request (fail-400).", param=None, code="fake_fail_400")
        if model == "fail-401":
            raise ApiError(401, "Incorrect API key provided: sk-***. (fail-401)", code="invalid_api_key")
        if model == "fail-429":
            raise ApiError(
                429,
                "Rate limit reached for requests (fail-429).",
                type="requests",
                code="rate_limit_exceeded",
                headers={"retry-after": "0"},
            )
        if model == "fail-500":
            raise ApiError(500, "The server had an error while processing your request.", type="server_error")
        match = _FLAKY.match(model)
        if match:
            seen = self.flaky_counts.get(model, 0)
            self.flaky_counts[model] = seen + 1
            if seen < int(match.group(1)):
                raise ApiError(
                    500, f"Fake upstream: flaky failure {seen + 1} of {match.group(1)}.", type="server_error"
                )
        if model == "hang":
            await self._hang(request)
        if model == "die-midstream":
            return "die"
        if model == "stall-midstream":
            return "stall"
        return None

    async def _hang(self, request: Request) -> None:
        """Never answer (for `hang_seconds`). Gives up as soon as the client hangs up, so a timed-out
        call leaves no task behind to hold up the server's shutdown; the client sees the same thing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.hang_seconds
        try:
            while loop.time() < deadline:
                if await request.is_disconnected():
                    raise ApiError(499, "Client closed the request.", type="server_error")
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:  # server shutting down: end quietly, nobody is listening
            raise ApiError(503, "Fake upstream shutting down.", type="server_error") from None

    @staticmethod
    async def _dying_body(prefix: bytes) -> AsyncIterator[bytes]:
        yield prefix
        await asyncio.sleep(0.05)  # let the bytes reach the client before the connection drops
        raise FakeStreamDied("die-midstream: upstream dropped the connection")

    @staticmethod
    def _meta(body: dict[str, Any]) -> tuple[int, str]:
        seed = body.get("seed")
        fingerprint = f"fp_{seed}" if seed is not None else "fp_fake"
        return int(time.time()), fingerprint

    # ---- chat

    def _validate_chat(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        if "messages" not in body or body["messages"] is None:
            raise ApiError(
                400,
                "Missing required parameter: 'messages'.",
                param="messages",
                code="missing_required_parameter",
            )
        messages = body["messages"]
        if not isinstance(messages, list):
            raise ApiError(
                400, "Invalid type for 'messages': expected an array.", param="messages", code="invalid_type"
            )
        if not messages:
            raise ApiError(
                400,
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty "
                "array instead.",
                param="messages",
                code="empty_array",
            )
        # ids of the nearest preceding assistant `tool_calls` (while only tool messages followed it),
        # and those of them still without a tool message answering them
        answerable: set[str] | None = None
        pending: list[str] = []
        pending_from = -1
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                raise ApiError(
                    400,
                    f"Invalid type for 'messages[{i}]': expected an object.",
                    param=f"messages[{i}]",
                    code="invalid_type",
                )
            role = msg.get("role")
            if role is None:
                raise ApiError(
                    400,
                    f"Missing required parameter: 'messages[{i}].role'.",
                    param=f"messages[{i}].role",
                    code="missing_required_parameter",
                )
            if role not in VALID_ROLES:
                raise ApiError(
                    400,
                    f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', "
                    "'function', 'tool', and 'developer'.",
                    param=f"messages[{i}].role",
                    code="invalid_value",
                )
            content = msg.get("content")
            if role in ("system", "developer", "user") and content is None:
                raise ApiError(
                    400,
                    f"Missing required parameter: 'messages[{i}].content'.",
                    param=f"messages[{i}].content",
                    code="missing_required_parameter",
                )
            if content is not None and not isinstance(content, str | list):
                raise ApiError(
                    400,
                    f"Invalid type for 'messages[{i}].content': expected one of a string or "
                    "array of objects.",
                    param=f"messages[{i}].content",
                    code="invalid_type",
                )
            if role == "tool":
                call_id = msg.get("tool_call_id")
                if not call_id:
                    raise ApiError(
                        400,
                        f"Missing required parameter: 'messages[{i}].tool_call_id'.",
                        param=f"messages[{i}].tool_call_id",
                        code="missing_required_parameter",
                    )
                if answerable is None:
                    raise ApiError(
                        400,
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                        "message with 'tool_calls'.",
                        param=f"messages.[{i}].role",
                    )
                if call_id not in answerable:
                    raise ApiError(
                        400,
                        f"Invalid parameter: 'tool_call_id' of '{call_id}' not found in 'tool_calls' of "
                        "previous message.",
                        param=f"messages.[{i}].tool_call_id",
                    )
                if call_id in pending:
                    pending.remove(call_id)
                continue
            if pending:
                raise _unanswered(pending, pending_from)
            answerable = None
            if role != "assistant":
                continue
            tool_calls = msg.get("tool_calls")
            if content is None and not tool_calls and msg.get("function_call") is None:
                raise ApiError(
                    400,
                    f"Invalid value for 'messages[{i}].content': expected a string, got null.",
                    param=f"messages.[{i}].content",
                )
            if tool_calls:
                if not isinstance(tool_calls, list):
                    raise ApiError(
                        400,
                        f"Invalid type for 'messages[{i}].tool_calls': expected an array.",
                        param=f"messages[{i}].tool_calls",
                        code="invalid_type",
                    )
                for j, tc in enumerate(tool_calls):
                    fn = tc.get("function") if isinstance(tc, dict) else None
                    if (
                        not isinstance(tc, dict)
                        or not tc.get("id")
                        or not isinstance(fn, dict)
                        or not fn.get("name")
                        or not isinstance(fn.get("arguments"), str)
                    ):
                        raise ApiError(
                            400,
                            f"Invalid 'messages[{i}].tool_calls[{j}]': expected "
                            "{id, type: 'function', function: {name, arguments: string}}.",
                            param=f"messages[{i}].tool_calls[{j}]",
                            code="invalid_value",
                        )
                answerable = {tc["id"] for tc in tool_calls}
                pending = [tc["id"] for tc in tool_calls]
                pending_from = i
        if pending:
            raise _unanswered(pending, pending_from)

        tools = body.get("tools")
        if tools is not None:
            if not isinstance(tools, list):
                raise ApiError(
                    400, "Invalid type for 'tools': expected an array.", param="tools", code="invalid_type"
                )
            for j, tool in enumerate(tools):
                fn = tool.get("function") if isinstance(tool, dict) else None
                if (
                    not isinstance(tool, dict)
                    or tool.get("type") != "function"
                    or not isinstance(fn, dict)
                    or not fn.get("name")
                ):
                    raise ApiError(
                        400,
                        f"Missing required parameter: 'tools[{j}].function'.",
                        param=f"tools[{j}].function",
                        code="missing_required_parameter",
                    )
        if body.get("tool_choice") is not None and not tools:
            raise ApiError(
                400,
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
                param="tool_choice",
            )
        fmt = body.get("response_format")
        if fmt is not None:
            kind = fmt.get("type") if isinstance(fmt, dict) else None
            if kind not in ("text", "json_object", "json_schema"):
                raise ApiError(
                    400,
                    f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object', and "
                    "'json_schema'.",
                    param="response_format.type",
                    code="invalid_value",
                )
            if kind == "json_schema" and not (
                isinstance(fmt.get("json_schema"), dict) and fmt["json_schema"].get("name")
            ):
                raise ApiError(
                    400,
                    "Missing required parameter: 'response_format.json_schema.name'.",
                    param="response_format.json_schema.name",
                    code="missing_required_parameter",
                )
        if body.get("top_logprobs") is not None and not body.get("logprobs"):
            raise ApiError(
                400,
                "Invalid value for 'top_logprobs': 'logprobs' must be set to true when "
                "'top_logprobs' is specified.",
                param="top_logprobs",
            )
        return messages

    def _chat_answer(self, body: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
        """What the assistant says: {"content": str} or {"tool": (name, arguments)}."""
        tools = body.get("tools") or []
        choice = body.get("tool_choice")
        has_result = any(m.get("role") in ("tool", "function") for m in messages)
        if tools and choice != "none" and not has_result:
            name = tools[0]["function"]["name"]
            if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
                name = choice["function"].get("name") or name
            return {"tool": (name, '{"city": "Paris"}')}
        if has_result:
            last = next(m for m in reversed(messages) if m.get("role") in ("tool", "function"))
            return {"content": f"The tool said: {_content_text(last.get('content'))}"}
        fmt = body.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
            return {"content": '{"ok": true}'}
        return {"content": GREETING}

    async def chat(self, request: Request) -> Response:
        try:
            body = await self._read(request)
            model = self._model(body)
            messages = self._validate_chat(body)
            n = _int_param(body, "n", 1, 128, 1)
            top = _int_param(body, "top_logprobs", 0, 20, 0)
            include_usage = _stream_usage(body)
            max_tokens = _max_tokens(body)
            fault = await self._fault(model, request)
        except ApiError as e:
            return e.response()

        prompt_tokens = max(1, sum(_words(_content_text(m.get("content"))) for m in messages))
        answer = self._chat_answer(body, messages)
        created, fingerprint = self._meta(body)
        cid = self.next_id("chatcmpl")
        want_logprobs = bool(body.get("logprobs"))
        stream = bool(body.get("stream"))

        finish = "stop"
        pieces: list[str] = []
        completion_tokens = COMPLETION_TOKENS
        if "content" in answer:
            pieces = split3(answer["content"])
            if max_tokens is not None and max_tokens < len(pieces):
                pieces, finish, completion_tokens = pieces[:max_tokens], "length", max_tokens
        else:
            finish = "tool_calls"
        base = {"id": cid, "created": created, "model": model, "system_fingerprint": fingerprint}

        if not stream:
            if fault == "die":
                partial = orjson.dumps({**base, "object": "chat.completion"})[:-1] + b', "choices": [{"ind'
                return StreamingResponse(self._dying_body(partial), media_type="application/json")
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
                        "logprobs": _chat_logprobs(pieces, top) if want_logprobs else None,
                        "finish_reason": finish,
                    }
                )
            data = {
                **base,
                "object": "chat.completion",
                "choices": choices,
                "usage": _usage(prompt_tokens, completion_tokens * n),
                "service_tier": "default",
            }
            return _json(data)

        def chunk(choices: list[dict[str, Any]], usage: Any = ...) -> bytes:
            data: dict[str, Any] = {**base, "object": "chat.completion.chunk", "choices": choices}
            if include_usage:
                data["usage"] = None if usage is ... else usage
            return _sse(data)

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
                    lp = _chat_logprobs([piece], top, start=k) if want_logprobs else None
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
                self._dying_body(b"".join(frames[: n + 2 * n])), media_type="text/event-stream"
            )
        if fault == "stall":
            return PartialStream(frames[: n + 2 * n], stall=True)
        for i in range(n):
            frames.append(chunk([delta(i, {}, finish_reason=finish)]))
        if include_usage:
            frames.append(chunk([], usage=_usage(prompt_tokens, completion_tokens * n)))
        frames.append(_DONE)
        return StreamingResponse(_iterate(frames), media_type="text/event-stream")

    # ---- legacy completions

    async def completions(self, request: Request) -> Response:
        try:
            body = await self._read(request)
            model = self._model(body)
            prompts = self._validate_prompt(body)
            n = _int_param(body, "n", 1, 128, 1)
            top = _int_param(body, "logprobs", 0, 5, 0) if body.get("logprobs") is not None else None
            include_usage = _stream_usage(body)
            max_tokens = _max_tokens(body)
            fault = await self._fault(model, request)
        except ApiError as e:
            return e.response()

        prompt_tokens = max(1, sum(_words(p) for p in prompts))
        created, fingerprint = self._meta(body)
        cid = self.next_id("cmpl")
        pieces = split3(GREETING)
        finish, completion_tokens = "stop", COMPLETION_TOKENS
        if max_tokens is not None and max_tokens < len(pieces):
            pieces, finish, completion_tokens = pieces[:max_tokens], "length", max_tokens
        echo = bool(body.get("echo"))
        total_choices = len(prompts) * n
        base = {"id": cid, "created": created, "model": model, "system_fingerprint": fingerprint}
        usage = _usage(prompt_tokens, completion_tokens * total_choices)
        usage.pop("prompt_tokens_details")
        usage.pop("completion_tokens_details")

        if not body.get("stream"):
            if fault == "die":
                partial = orjson.dumps({**base, "object": "text_completion"})[:-1] + b', "choices": [{"te'
                return StreamingResponse(self._dying_body(partial), media_type="application/json")
            choices = []
            for p, prompt in enumerate(prompts):
                for i in range(n):
                    prefix = prompt if echo else ""
                    choices.append(
                        {
                            "text": prefix + "".join(pieces),
                            "index": p * n + i,
                            "logprobs": _text_logprobs(pieces, top or 1, offset=len(prefix))
                            if top is not None
                            else None,
                            "finish_reason": finish,
                        }
                    )
            return _json({**base, "object": "text_completion", "choices": choices, "usage": usage})

        def chunk(choices: list[dict[str, Any]], use: Any = ...) -> bytes:
            data: dict[str, Any] = {**base, "object": "text_completion", "choices": choices}
            if include_usage:
                data["usage"] = None if use is ... else use
            return _sse(data)

        frames: list[bytes] = []
        for k, piece in enumerate(pieces):
            for idx in range(total_choices):
                lp = _text_logprobs([piece], top or 1, start=k) if top is not None else None
                text = (prompts[idx // n] + piece) if echo and k == 0 else piece
                frames.append(chunk([{"text": text, "index": idx, "logprobs": lp, "finish_reason": None}]))
        if fault == "die":
            return StreamingResponse(
                self._dying_body(b"".join(frames[: 2 * total_choices])), media_type="text/event-stream"
            )
        for idx in range(total_choices):
            frames.append(chunk([{"text": "", "index": idx, "logprobs": None, "finish_reason": finish}]))
        if include_usage:
            frames.append(chunk([], use=usage))
        frames.append(_DONE)
        return StreamingResponse(_iterate(frames), media_type="text/event-stream")

    @staticmethod
    def _validate_prompt(body: dict[str, Any]) -> list[str]:
        prompt = body.get("prompt")
        if prompt is None:
            raise ApiError(
                400,
                "Missing required parameter: 'prompt'.",
                param="prompt",
                code="missing_required_parameter",
            )
        if isinstance(prompt, str):
            return [prompt]
        if isinstance(prompt, list) and prompt:
            if all(isinstance(p, str) for p in prompt):
                return list(prompt)
            if all(isinstance(t, int) for t in prompt):
                return [" ".join(map(str, prompt))]
            if all(isinstance(p, list) and p and all(isinstance(t, int) for t in p) for p in prompt):
                return [" ".join(map(str, p)) for p in prompt]
        raise ApiError(
            400,
            "Invalid type for 'prompt': expected a string, an array of strings, an array of "
            "tokens or an array of token arrays.",
            param="prompt",
            code="invalid_type",
        )

    # ---- embeddings

    async def embeddings(self, request: Request) -> Response:
        try:
            body = await self._read(request)
            model = self._model(body)
            inputs = self._validate_input(body)
            dim = _int_param(body, "dimensions", 1, 4096, DEFAULT_EMBEDDING_DIM)
            fmt = body.get("encoding_format") or "float"
            if fmt not in ("float", "base64"):
                raise ApiError(
                    400,
                    f"Invalid value: '{fmt}'. Supported values are: 'float' and 'base64'.",
                    param="encoding_format",
                    code="invalid_value",
                )
            fault = await self._fault(model, request)
        except ApiError as e:
            return e.response()
        data = []
        for i, text in enumerate(inputs):
            vector = embedding_vector(text, dim)
            value: Any = vector
            if fmt == "base64":
                value = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = max(1, sum(_words(t) for t in inputs))
        doc = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        if fault == "die":
            return StreamingResponse(self._dying_body(orjson.dumps(doc)[:40]), media_type="application/json")
        return _json(doc)

    @staticmethod
    def _validate_input(body: dict[str, Any]) -> list[str]:
        value = body.get("input")
        if value is None:
            raise ApiError(
                400, "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
            )
        if isinstance(value, str):
            value = [value]
        elif isinstance(value, list) and value and all(isinstance(t, int) for t in value):
            value = [" ".join(map(str, value))]
        elif isinstance(value, list) and value and all(isinstance(t, list) for t in value):
            value = [" ".join(map(str, t)) for t in value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise ApiError(
                400,
                "'$.input' is invalid. Please check the API reference: "
                "https://platform.openai.com/docs/api-reference.",
                param=None,
                code=None,
            )
        if any(v == "" for v in value):
            raise ApiError(
                400,
                "'$.input' is invalid. Please check the API reference: "
                "https://platform.openai.com/docs/api-reference.",
                param=None,
                code=None,
            )
        return value

    # ---- models

    def _model_doc(self, model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "switchyard-fake"}

    async def list_models(self, request: Request) -> Response:
        self.requests.append(RecordedRequest(request.url.path, dict(request.headers), None))
        try:
            self._check_auth(request)
        except ApiError as e:
            return e.response()
        return _json({"object": "list", "data": [self._model_doc(m) for m in self.models]})

    async def get_model(self, request: Request) -> Response:
        self.requests.append(RecordedRequest(request.url.path, dict(request.headers), None))
        try:
            self._check_auth(request)
        except ApiError as e:
            return e.response()
        model_id = request.path_params["model"]
        if model_id not in self.models:
            return ApiError(
                404, f"The model '{model_id}' does not exist", param="model", code="model_not_found"
            ).response()
        return _json(self._model_doc(model_id))


def _unanswered(pending: list[str], index: int) -> ApiError:
    return ApiError(
        400,
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(pending)}",
        param=f"messages.[{index}].role",
    )


async def _iterate(frames: list[bytes]) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame


def embedding_vector(text: str, dim: int = DEFAULT_EMBEDDING_DIM) -> list[float]:
    """The fake's deterministic unit vector for `text` (exactly representable in float32)."""
    raw = b""
    counter = 0
    while len(raw) < dim:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    values = [(b - 127.5) / 127.5 for b in raw[:dim]]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    # round-trip through float32 so the float and base64 encodings carry the same numbers
    return list(struct.unpack(f"<{dim}f", struct.pack(f"<{dim}f", *(v / norm for v in values))))


def create_app(*, hang_seconds: float = 60.0, models: Iterable[str] = DEFAULT_MODELS) -> Starlette:
    """The fake OpenAI upstream. `app.state.requests` lists every request received (RecordedRequest),
    `app.state.flaky_counts` the calls seen per flaky-N-* model id, `app.state.fake` the implementation."""
    fake = _Fake(hang_seconds, models)
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", fake.chat, methods=["POST"]),
            Route("/v1/completions", fake.completions, methods=["POST"]),
            Route("/v1/embeddings", fake.embeddings, methods=["POST"]),
            Route("/v1/models", fake.list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", fake.get_model, methods=["GET"]),
        ]
    )
    app.state.fake = fake
    app.state.requests = fake.requests
    app.state.flaky_counts = fake.flaky_counts
    return app
