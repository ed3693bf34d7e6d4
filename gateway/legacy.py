"""Legacy /v1/completions for deployments that only speak chat: prompt in, text_completion out."""

from __future__ import annotations

from typing import Any

from gateway.errors import bad_request

_CHAT_ONLY_DROP = ("prompt", "echo", "best_of", "suffix", "logprobs")


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise bad_request("this model accepts exactly one string prompt", param="prompt")
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise bad_request("prompt must be a string", param="prompt")
    chat = {k: v for k, v in body.items() if k not in _CHAT_ONLY_DROP}
    chat["messages"] = [{"role": "user", "content": prompt}]
    return chat


def from_chat(data: dict[str, Any]) -> dict[str, Any]:
    choices = [
        {
            "index": c.get("index", i),
            "text": (c.get("message") or {}).get("content") or "",
            "logprobs": None,
            "finish_reason": c.get("finish_reason"),
        }
        for i, c in enumerate(data.get("choices") or [])
    ]
    out = {
        "id": str(data.get("id", "")).replace("chatcmpl", "cmpl", 1),
        "object": "text_completion",
        "created": data.get("created", 0),
        "model": data.get("model", ""),
        "choices": choices,
    }
    if data.get("usage") is not None:
        out["usage"] = data["usage"]
    return out


def chunk_from_chat(data: dict[str, Any]) -> dict[str, Any]:
    choices = [
        {
            "index": c.get("index", 0),
            "text": (c.get("delta") or {}).get("content") or "",
            "logprobs": None,
            "finish_reason": c.get("finish_reason"),
        }
        for c in data.get("choices") or []
    ]
    out = {
        "id": str(data.get("id", "")).replace("chatcmpl", "cmpl", 1),
        "object": "text_completion",
        "created": data.get("created", 0),
        "model": data.get("model", ""),
        "choices": choices,
    }
    if "usage" in data:
        out["usage"] = data["usage"]
    return out
