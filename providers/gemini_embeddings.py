"""OpenAI embeddings <-> Gemini batchEmbedContents. Pure: no I/O."""

from __future__ import annotations

import base64
import struct
from typing import Any

from providers.gemini_errors import bad_request


def embed_inputs(body: dict[str, Any]) -> list[str]:
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, list) and value:
        raise bad_request("Gemini embeddings take text input only, not token arrays", "input")
    raise bad_request("input must be a non-empty string or list of strings", "input")


def build_embed_request(
    texts: list[str], model: str, body: dict[str, Any], options: dict[str, Any] | None = None
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if body.get("dimensions"):
        extra["outputDimensionality"] = body["dimensions"]
    if (options or {}).get("task_type"):
        extra["taskType"] = options["task_type"]  # type: ignore[index]
    return {
        "requests": [
            {"model": f"models/{model}", "content": {"parts": [{"text": text}]}, **extra} for text in texts
        ]
    }


def _encode_base64(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def build_embed_response(
    data: dict[str, Any], model: str, prompt_tokens: int, encoding_format: str | None = None
) -> dict[str, Any]:
    items = []
    for i, embedding in enumerate(data.get("embeddings") or []):
        values = embedding.get("values") or []
        items.append(
            {
                "object": "embedding",
                "index": i,
                "embedding": _encode_base64(values) if encoding_format == "base64" else values,
            }
        )
    return {
        "object": "list",
        "data": items,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
