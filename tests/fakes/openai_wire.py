"""OpenAI wire format for the fake upstream: JSON and SSE framing, the error body, usage, logprobs, and
the deterministic text splitting and embedding vectors its answers are built from."""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response

DEFAULT_EMBEDDING_DIM = 8
SSE_DONE = b"data: [DONE]\n\n"


class ApiError(Exception):
    """An OpenAI error answer: raise it anywhere in a handler, which returns `.response()`."""

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
        return json_response(body, status=self.status, headers=self.headers)


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def sse_frame(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


async def iterate_frames(frames: list[bytes]) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame


def word_count(text: str) -> int:
    return len(text.split())


def content_text(content: Any) -> str:
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
    if pieces:  # the pattern leaves trailing whitespace out
        pieces[-1] += text[len("".join(pieces)) :]
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


def chat_answer(body: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
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
        return {"content": f"The tool said: {content_text(last.get('content'))}"}
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        return {"content": '{"ok": true}'}
    return {"content": "Hello from openai!"}


def usage_doc(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def cached_prefix_tokens(model: str, words: list[int]) -> int:
    """OpenAI's automatic prompt caching, for model ids starting with "cached": the conversation so
    far (every message but the last, `words` per message) was sent before and is read from the cache."""
    return sum(words[:-1]) if model.startswith("cached") else 0


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


def chat_logprobs(tokens: list[str], top: int, start: int = 0) -> dict[str, Any]:
    return {"content": [_token_logprob(t, start + i, top) for i, t in enumerate(tokens)], "refusal": None}


def text_logprobs(tokens: list[str], top: int, start: int = 0, offset: int = 0) -> dict[str, Any]:
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


def model_doc(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "switchyard-fake"}


def embeddings_doc(model: str, inputs: list[str], dim: int, fmt: str) -> dict[str, Any]:
    """The embeddings answer: one `embedding_vector` per input, as floats or base64 float32."""
    data = []
    for i, text in enumerate(inputs):
        vector = embedding_vector(text, dim)
        value: Any = vector
        if fmt == "base64":
            value = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": value})
    tokens = max(1, sum(word_count(t) for t in inputs))
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


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
