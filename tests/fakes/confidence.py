"""Fake OpenAI models whose answers come with a chosen confidence, for cascade routing.

A model id `conf-<p>[-words-<n>][-ms-<d>]` (e.g. `conf-0.41`, `conf-0.9-words-200-ms-10`; `conf-prompt`
reads `p=<p>` in the last message) answers with
`n` tokens (default 6), one per stream chunk, `d` ms apart when streamed; asked for logprobs, it
gives them in OpenAI's shape (`choices[0].logprobs.content[{token, logprob, bytes, top_logprobs}]`,
per chunk when streamed) with a mean token probability of exactly `p` (up to float rounding): tokens
go in pairs at p + s and p - s, as a model is surer of some tokens than of others, an odd last one
at p.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

_MODEL = re.compile(r"^conf-(\d+(?:\.\d+)?|prompt)(?:-words-(\d+))?(?:-ms-(\d+))?$")
_IN_PROMPT = re.compile(r"\bp=(\d+(?:\.\d+)?)")


@dataclass(frozen=True, slots=True)
class Confident:
    p: float
    words: int = 6
    delay_s: float = 0.0

    @classmethod
    def of(cls, model: str, prompt: str = "") -> Confident | None:
        """`conf-prompt...` takes `p` from the last message instead (`p=0.37` in its text)."""
        m = _MODEL.match(model)
        if m is None:
            return None
        p = m.group(1)
        if p == "prompt":
            found = _IN_PROMPT.search(prompt)
            p = found.group(1) if found else "1"
        return cls(float(p), int(m.group(2) or 6), int(m.group(3) or 0) / 1000)

    def pieces(self) -> list[str]:
        return [f"{'' if i == 0 else ' '}tok{i}" for i in range(self.words)]

    def prob(self, position: int) -> float:
        spread = min(self.p, 1.0 - self.p) / 2
        if position == self.words - 1 and self.words % 2:
            return self.p
        return self.p + spread if position % 2 == 0 else self.p - spread

    def logprobs(self, tokens: list[str], top: int, start: int = 0) -> dict[str, Any]:
        content = []
        for i, token in enumerate(tokens):
            logprob = math.log(max(self.prob(start + i), 1e-12))
            alternatives = [
                {"token": token, "logprob": logprob, "bytes": list(token.encode())},
                *(
                    {"token": f"alt{k}", "logprob": logprob - 1.0 - k, "bytes": list(f"alt{k}".encode())}
                    for k in range(1, top)
                ),
            ]
            content.append(
                {
                    "token": token,
                    "logprob": logprob,
                    "bytes": list(token.encode()),
                    "top_logprobs": alternatives[:top],
                }
            )
        return {"content": content, "refusal": None}

    async def frames(self, frames: list[bytes]) -> AsyncIterator[bytes]:
        for frame in frames:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            yield frame
