"""A fake OpenAI-compatible upstream for shadow judging: models answer "<model> answer" (so the
cheaper and the strongest candidate's answers differ), a model named `judge*` answers as a judge.

The judge's `mode` (set on the JudgeUpstream object, the test's thread to the server's):
  "A"       always the answer in position A: a judge biased by position
  "cheap"   the answer that came from the model named in `cheap_model`
  "strong"  the other one
  "tie"     TIE
  "garbled" an unreadable answer
Every call is counted by model in `calls`; usage is fixed (PROMPT_TOKENS, COMPLETION_TOKENS);
calls to `slow_model` take `delay` seconds.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

PROMPT_TOKENS = 10
COMPLETION_TOKENS = 5
_ANSWER_A = re.compile(r"\[Answer A\]\n(.*?)\n\n\[Answer B\]", re.S)


class JudgeUpstream:
    def __init__(self, cheap_model: str = "cheap-model") -> None:
        self.mode = "A"
        self.cheap_model = cheap_model
        self.calls: Counter[str] = Counter()
        self.slow_model = "strong-model"
        self.delay = 0.0
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    def _verdict(self, prompt: str) -> str:
        if self.mode in ("A", "tie", "garbled"):
            return {"A": "A", "tie": "TIE", "garbled": "I cannot decide."}[self.mode]
        match = _ANSWER_A.search(prompt)
        cheap_first = match is not None and match.group(1).startswith(self.cheap_model)
        wants_cheap = self.mode == "cheap"
        return "A" if cheap_first == wants_cheap else "B"

    async def _chat(self, request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        model = str(body.get("model"))
        self.calls[model] += 1
        if model == self.slow_model and self.delay:
            await asyncio.sleep(self.delay)
        if model.startswith("judge"):
            content = self._verdict(str(body["messages"][-1]["content"]))
        else:
            content = f"{model} answer"
        message = {"role": "assistant", "content": content}
        return JSONResponse(
            {
                "id": f"chatcmpl-{sum(self.calls.values())}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": PROMPT_TOKENS,
                    "completion_tokens": COMPLETION_TOKENS,
                    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                },
            }
        )
