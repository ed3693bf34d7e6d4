"""`SlowUpstream`: a raw-ASGI OpenAI-shaped upstream for the end-to-end gateway's `slow` deployment.

It streams (or answers) slowly and records whether the gateway hung up on it, so tests can check that a
client disconnect propagates upstream."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson


class SlowUpstream:
    """An OpenAI-shaped upstream (raw ASGI) that answers slowly and records whether its client hung up.

    Streamed: a role chunk, then one content chunk every `interval` s for up to `chunks` chunks.
    Not streamed: waits up to `hold_s` for the client to disconnect before answering.
    Either way, `head_s` first delays the response's start (a model slow to its first token).
    With `logprob` set, a stream asked for logprobs gives each token that logprob (a cascade's probe).
    `disconnected` is set when the gateway's connection to it closes mid-request."""

    def __init__(
        self,
        interval: float = 0.05,
        chunks: int = 200,
        hold_s: float = 10.0,
        head_s: float = 0.0,
        logprob: float | None = None,
    ) -> None:
        self.interval = interval
        self.chunks = chunks
        self.hold_s = hold_s
        self.head_s = head_s
        self.logprob = logprob
        self.started = threading.Event()
        self.disconnected = threading.Event()
        self.finished = threading.Event()
        self.sent = 0

    def reset(self) -> None:
        self.started.clear()
        self.disconnected.clear()
        self.finished.clear()
        self.sent = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = orjson.loads(raw) if raw else {}
        self.started.set()
        watcher = asyncio.ensure_future(self._watch(receive))
        try:
            if self.head_s:
                await asyncio.wait([watcher], timeout=self.head_s)
                if watcher.done():
                    return
            if body.get("stream"):
                await self._stream(body, send, watcher)
            else:
                await asyncio.wait([watcher], timeout=self.hold_s)
                if not watcher.done():
                    await self._answer(body, send)
        finally:
            watcher.cancel()
            self.finished.set()

    async def _watch(self, receive: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected.set()
                return

    def _chunk(self, body: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        token = delta.get("content")
        if token and self.logprob is not None and body.get("logprobs"):
            entry = {
                "token": token,
                "logprob": self.logprob,
                "bytes": list(token.encode()),
                "top_logprobs": [],
            }
            choice["logprobs"] = {"content": [entry], "refusal": None}
        doc = {
            "id": "chatcmpl-slow",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": body.get("model"),
            "choices": [choice],
        }
        return b"data: " + orjson.dumps(doc) + b"\n\n"

    async def _stream(self, body: dict[str, Any], send: Any, watcher: asyncio.Future[None]) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        first = self._chunk(body, {"role": "assistant", "content": ""})
        await send({"type": "http.response.body", "body": first, "more_body": True})
        for i in range(self.chunks):
            if watcher.done():
                return
            await send(
                {
                    "type": "http.response.body",
                    "body": self._chunk(body, {"content": f"t{i} "}),
                    "more_body": True,
                }
            )
            self.sent += 1
            await asyncio.sleep(self.interval)
        end = self._chunk(body, {}, "stop") + b"data: [DONE]\n\n"
        await send({"type": "http.response.body", "body": end, "more_body": False})

    @staticmethod
    async def _answer(body: dict[str, Any], send: Any) -> None:
        doc = {
            "id": "chatcmpl-slow",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "slow"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        payload = orjson.dumps(doc)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload, "more_body": False})
