"""Gemini generateContent answers -> OpenAI chat.completion, and stream events -> chunks. Pure: no I/O.

A Gemini answer holds `candidates[]` (`content.parts`, `finishReason`, `index`), `usageMetadata`,
`promptFeedback`, `responseId`, `modelVersion`; a stream sends the same document per SSE event, each
holding only the new parts.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from providers.base import token_count
from providers.gemini_tool_ids import new_call_id

FINISH_REASONS: dict[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "LANGUAGE": "stop",
    "OTHER": "stop",
    "MALFORMED_FUNCTION_CALL": "stop",
    "UNEXPECTED_TOOL_CALL": "stop",
    "TOO_MANY_TOOL_CALLS": "stop",
}


def tool_call(part: dict[str, Any]) -> dict[str, Any]:
    call = part["functionCall"]
    return {
        "id": new_call_id(part.get("thoughtSignature")),
        "type": "function",
        "function": {
            "name": call.get("name", ""),
            "arguments": orjson.dumps(call.get("args") or {}).decode(),
        },
    }


def finish_reason(native: str | None, has_tool_calls: bool) -> str | None:
    if native is None:
        return None
    reason = FINISH_REASONS.get(native, "stop")
    return "tool_calls" if has_tool_calls and reason == "stop" else reason


def usage(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    if not meta or not isinstance(meta, dict):
        return None
    keys = ("promptTokenCount", "toolUsePromptTokenCount", "thoughtsTokenCount", "candidatesTokenCount")
    counts = [token_count(meta.get(k)) for k in keys]
    cached = token_count(meta.get("cachedContentTokenCount"))
    if None in counts or cached is None:
        return None  # not token counts: the gateway counts the tokens itself
    # Tool-use prompt tokens (built-in tools) are billed as input, thoughts as output.
    prompt_only, tool_prompt, thoughts, candidates = counts
    prompt = prompt_only + tool_prompt
    completion = candidates + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


def logprobs(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if not result:
        return None
    chosen = result.get("chosenCandidates") or []
    tops = result.get("topCandidates") or []
    content = []
    for i, candidate in enumerate(chosen):
        token = candidate.get("token", "")
        alternatives = (tops[i].get("candidates") or []) if i < len(tops) else []
        content.append(
            {
                "token": token,
                "logprob": candidate.get("logProbability", 0.0),
                "bytes": list(token.encode()),
                "top_logprobs": [
                    {
                        "token": t.get("token", ""),
                        "logprob": t.get("logProbability", 0.0),
                        "bytes": list(t.get("token", "").encode()),
                    }
                    for t in alternatives
                ],
            }
        )
    return {"content": content}


def _split_parts(parts: list[dict[str, Any]]) -> tuple[str, str, list[dict[str, Any]]]:
    """(answer text, thought text, tool calls)."""
    text, thoughts, calls = [], [], []
    for part in parts:
        if "functionCall" in part:
            calls.append(tool_call(part))
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else text).append(part["text"])
    return "".join(text), "".join(thoughts), calls


def completion_id(data: dict[str, Any]) -> str:
    return f"chatcmpl-{data.get('responseId') or uuid.uuid4().hex}"


def build_response(data: dict[str, Any], model: str) -> dict[str, Any]:
    """A Gemini GenerateContentResponse -> an OpenAI chat.completion."""
    choices = []
    for position, candidate in enumerate(data.get("candidates") or []):
        text, thoughts, calls = _split_parts((candidate.get("content") or {}).get("parts") or [])
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            message["tool_calls"] = calls
        if thoughts:
            message["reasoning_content"] = thoughts
        choices.append(
            {
                "index": candidate.get("index", position),
                "message": message,
                "finish_reason": finish_reason(candidate.get("finishReason") or "STOP", bool(calls)),
                "logprobs": logprobs(candidate.get("logprobsResult")),
            }
        )
    if not choices and (data.get("promptFeedback") or {}).get("blockReason"):
        # The prompt itself was blocked: there is no candidate, which OpenAI expresses as a filtered answer.
        choices.append(
            {
                "index": 0,
                "message": {"role": "assistant", "content": None},
                "finish_reason": "content_filter",
                "logprobs": None,
            }
        )
    out: dict[str, Any] = {
        "id": completion_id(data),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": data.get("modelVersion") or model,
        "choices": choices,
    }
    u = usage(data.get("usageMetadata"))
    if u:
        out["usage"] = u
    return out


@dataclass(slots=True)
class StreamState:
    """Turns successive Gemini stream events into OpenAI chunk payloads for one response."""

    model: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    started: set[int] = field(default_factory=set)
    tool_counts: dict[int, int] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)
    usage_meta: dict[str, Any] | None = None

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        if not self.id:
            self.id = completion_id(event)
        if event.get("modelVersion"):
            self.model = event["modelVersion"]
        if event.get("usageMetadata"):
            # Gemini repeats running totals on every event; the last one is the answer's usage.
            self.usage_meta = event["usageMetadata"]
        out: list[dict[str, Any]] = []
        candidates = event.get("candidates") or []
        for position, candidate in enumerate(candidates):
            index = candidate.get("index", position)
            text, thoughts, calls = _split_parts((candidate.get("content") or {}).get("parts") or [])
            delta: dict[str, Any] = {}
            if index not in self.started:
                self.started.add(index)
                delta["role"] = "assistant"
                delta["content"] = text if text or not calls else None
            elif text:
                delta["content"] = text
            if thoughts:
                delta["reasoning_content"] = thoughts
            if calls:
                base = self.tool_counts.get(index, 0)
                delta["tool_calls"] = [{"index": base + i, **call} for i, call in enumerate(calls)]
                self.tool_counts[index] = base + len(calls)
            if delta:
                choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": None}
                lp = logprobs(candidate.get("logprobsResult"))
                if lp:
                    choice["logprobs"] = lp
                out.append(self._chunk([choice]))
            native = candidate.get("finishReason")
            if native and index not in self.finished:
                self.finished.add(index)
                reason = finish_reason(native, self.tool_counts.get(index, 0) > 0)
                out.append(self._chunk([{"index": index, "delta": {}, "finish_reason": reason}]))
        if (
            not candidates
            and (event.get("promptFeedback") or {}).get("blockReason")
            and 0 not in self.finished
        ):
            self.started.add(0)
            self.finished.add(0)
            delta = {"role": "assistant", "content": ""}
            out.append(self._chunk([{"index": 0, "delta": delta, "finish_reason": "content_filter"}]))
        return out

    def close(self) -> list[dict[str, Any]]:
        """The chunks that end the stream: any missing finish, then one usage-only chunk."""
        out = [
            self._chunk(
                [
                    {
                        "index": i,
                        "delta": {},
                        "finish_reason": "tool_calls" if self.tool_counts.get(i) else "stop",
                    }
                ]
            )
            for i in sorted(self.started - self.finished)
        ]
        u = usage(self.usage_meta)
        if u:
            out.append({**self._chunk([]), "usage": u})
        return out
