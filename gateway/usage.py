"""Token counts when the upstream gives none: tiktoken over what was sent and what came back."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from routing.features import content_text
from routing.tokens import count_tokens

# Per-message framing overhead of OpenAI's chat format.
_PER_MESSAGE = 3
# An image part, as OpenAI bills it: 85 tokens at detail "low"; otherwise 765, a 1024x1024 image at
# "high" or "auto" (85 + 4 tiles of 170). Larger images cost more (Anthropic's up to ~1,600): an
# estimate, as the image itself is not decoded here.
IMAGE_TOKENS_LOW = 85
IMAGE_TOKENS = 765
# What the model reads besides the messages. Counted as their JSON, more than OpenAI's own rendering
# of tool definitions takes, so a budget's cap leaves room for them.
_DEFINITIONS = ("tools", "functions", "response_format")


# Characters a request's texts are counted over before the rest is estimated at the rate they gave:
# one prompt of many long messages must not cost a count per message (~7 ms per 100k characters).
REQUEST_COUNT_CHARS = 400_000


def prompt_tokens(
    body: dict[str, Any], known: Mapping[str, int] | None = None, count: Callable[[str], int] = count_tokens
) -> int:
    """The prompt's o200k count; `known` holds counts already taken of some texts (by the router),
    `count` counts the rest, until REQUEST_COUNT_CHARS have been counted."""
    seen = [0, 0]  # characters counted, tokens they came to

    def tokens(text: str) -> int:
        n = known.get(text) if known else None
        if n is not None:
            return n
        if seen[0] > REQUEST_COUNT_CHARS:
            return math.ceil(len(text) * seen[1] / seen[0])
        n = count(text)
        seen[0] += len(text)
        seen[1] += n
        return n

    messages = body.get("messages")
    if isinstance(messages, list):
        total = 3
        definitions = {f: body[f] for f in _DEFINITIONS if body.get(f)}
        if definitions:
            total += tokens(orjson.dumps(definitions).decode())
        for m in messages:
            if not isinstance(m, dict):
                continue
            content = m.get("content")
            total += _PER_MESSAGE + tokens(content_text(content))
            if isinstance(content, list):
                total += sum(_image_tokens(part) for part in content)
            calls = m.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    total += tokens(str(fn.get("name", "")) + str(fn.get("arguments", "")))
        return total
    for field in ("prompt", "input"):
        value = body.get(field)
        if isinstance(value, str):
            return tokens(value)
        if isinstance(value, list):
            return sum(
                tokens(v) if isinstance(v, str) else len(v) if isinstance(v, list) else 1 for v in value
            )
    return 0


def _image_tokens(part: Any) -> int:
    if not isinstance(part, dict) or part.get("type") != "image_url":
        return 0
    image = part.get("image_url")
    return IMAGE_TOKENS_LOW if isinstance(image, dict) and image.get("detail") == "low" else IMAGE_TOKENS


def max_output_of(body: dict[str, Any]) -> int | None:
    """The output length the client asked for (validated a positive integer by its door)."""
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class StreamCounter:
    """Accumulates streamed text so a stream without a usage chunk is still billed."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[str] = []

    def observe(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta")
            if delta is None:  # legacy text_completion chunk
                text = choice.get("text")
                if text:
                    self.parts.append(text)
                continue
            if delta.get("content"):
                self.parts.append(delta["content"])
            for call in delta.get("tool_calls") or ():
                fn = call.get("function") or {}
                self.parts.append(str(fn.get("name") or "") + str(fn.get("arguments") or ""))

    def tokens(self) -> int:
        return count_tokens("".join(self.parts))


def completion_tokens(data: dict[str, Any]) -> int:
    counter = StreamCounter()
    for choice in data.get("choices") or ():
        msg = choice.get("message")
        if msg is None:
            counter.parts.append(str(choice.get("text") or ""))
            continue
        counter.observe({"choices": [{"delta": msg}]})
    return counter.tokens()
