"""What a request needs from the model that serves it, and the refusal when no model offers it.

Pure functions of an OpenAI-shaped body (the Anthropic door's body translated, as routing reads it):

- `tools`: a non-empty `tools` (or legacy `functions`) that `tool_choice` (`function_call`) does not
  switch off with "none";
- `response_format`: `response_format.type` json_object or json_schema;
- `vision`: an `image_url` part in any message's content;
- `logprobs`: `logprobs` true (chat) or a number (legacy completions).

A deployment's capabilities are `providers.deployment.Deployment.capabilities`. A model that lacks
one would not fail: it would answer 200 with plain text, which is why the gateway refuses first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Need:
    capability: str
    # The request field that asks for it: the `param` of the refusal.
    param: str


class Unroutable(ValueError):
    """No deployment may serve the request as asked: the client's error (a 400), with the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def needs_of(body: Mapping[str, Any]) -> tuple[Need, ...]:
    needs: list[Need] = []
    for field, switch in (("tools", "tool_choice"), ("functions", "function_call")):
        offered = body.get(field)
        if isinstance(offered, list) and offered and body.get(switch) != "none":
            needs.append(Need("tools", field))
            break
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") in ("json_object", "json_schema"):
        needs.append(Need("response_format", "response_format"))
    if _has_image(body.get("messages")):
        needs.append(Need("vision", "messages"))
    logprobs = body.get("logprobs")
    if logprobs is True or (isinstance(logprobs, int) and not isinstance(logprobs, bool)):
        needs.append(Need("logprobs", "logprobs"))
    return tuple(needs)


def _has_image(messages: Any) -> bool:
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list) and any(
            isinstance(part, Mapping) and part.get("type") == "image_url" for part in content
        ):
            return True
    return False


def served_by(needs: Sequence[Need], capabilities: Iterable[str]) -> bool:
    have = capabilities if isinstance(capabilities, (set, frozenset)) else frozenset(capabilities)
    return all(n.capability in have for n in needs)


def lacks(needs: Sequence[Need], capabilities: Iterable[str]) -> str:
    """The needs `capabilities` does not meet, for an explanation: "tools+vision"."""
    have = frozenset(capabilities)
    return "+".join(n.capability for n in needs if n.capability not in have)


def missing(needs: Sequence[Need], offers: Sequence[Iterable[str]]) -> tuple[str, str] | None:
    """None when one of `offers` (capability sets) meets every need; otherwise what none meets, as
    words for a message ("tools", "tools and vision", "tools together with vision"), and the field
    the refusal points at."""
    sets = [frozenset(o) for o in offers]
    if any(served_by(needs, s) for s in sets):
        return None
    alone = [n for n in needs if not any(n.capability in s for s in sets)]
    if alone:
        return " and ".join(n.capability for n in alone), alone[0].param
    # Each need is met somewhere, but never all of them by one deployment.
    return " together with ".join(n.capability for n in needs), needs[0].param
