"""OpenAI tool call ids for Gemini function calls, which have none.

Gemini 3 needs each functionCall part's `thoughtSignature` echoed back with the call; carrying it inside
the OpenAI tool call id lets clients round-trip it without knowing.
"""

from __future__ import annotations

import uuid

THOUGHT_SIGNATURE_SEP = "__thought__"


def new_call_id(signature: str | None = None) -> str:
    base = f"call_{uuid.uuid4().hex[:24]}"
    return f"{base}{THOUGHT_SIGNATURE_SEP}{signature}" if signature else base


def signature_of(call_id: str) -> str | None:
    _, sep, signature = call_id.partition(THOUGHT_SIGNATURE_SEP)
    return signature if sep and signature else None
