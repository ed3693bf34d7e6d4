"""Token counts when the upstream gives none: tiktoken over what was sent and what came back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from routing.features import content_text
from routing.tokens import count_tokens

# Per-message framing overhead of OpenAI's chat format.
_PER_MESSAGE = 3


def prompt_tokens(
    body: dict[str, Any], known: Mapping[str, int] | None = None, count: Callable[[str], int] = count_tokens
) -> int:
    """The prompt's o200k count; `known` holds counts already taken of some texts (by the router),
    `count` counts the rest."""
    messages = body.get("messages")
    if isinstance(messages, list):
        total = 3
        for m in messages:
            if not isinstance(m, dict):
                continue
            text = content_text(m.get("content"))
            n = known.get(text) if known else None
            total += _PER_MESSAGE + (count(text) if n is None else n)
            calls = m.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    total += count(str(fn.get("name", "")) + str(fn.get("arguments", "")))
        return total
    for field in ("prompt", "input"):
        value = body.get(field)
        if isinstance(value, str):
            n = known.get(value) if known else None
            return count(value) if n is None else n
        if isinstance(value, list):
            return sum(
                count(v) if isinstance(v, str) else len(v) if isinstance(v, list) else 1 for v in value
            )
    return 0


def prompt_chars(body: dict[str, Any]) -> int:
    """How much text `prompt_tokens` would count, without counting it: decides where it runs."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return sum(len(content_text(m.get("content"))) for m in messages if isinstance(m, dict))
    total = 0
    for field in ("prompt", "input"):
        value = body.get(field)
        if isinstance(value, str):
            total += len(value)
        elif isinstance(value, list):
            total += sum(len(v) for v in value if isinstance(v, str))
    return total


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
