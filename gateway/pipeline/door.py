"""What a door is: the one part of a request's handling that depends on the API it came in on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.pipeline.outcome import Outcome
from providers.base import Chunk, Provider, Usage

Finish = Callable[[Outcome], None]


@dataclass(frozen=True, slots=True)
class Parsed:
    """One request, parsed and checked: its wire body and the OpenAI-shaped body that routing,
    limits and token counting read (the same object for the OpenAI door)."""

    model: str
    stream: bool
    body: dict[str, Any]
    routing: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Completed:
    """A complete answer in the door's wire format. `completion_tokens` counts the answer when the
    upstream gave no usage."""

    payload: bytes
    usage: Usage | None
    completion_tokens: Callable[[], int]


@dataclass(frozen=True, slots=True)
class Opened:
    """A stream whose first event has arrived; `native` says whether the events are already in the
    door's wire format or need translating."""

    first: Chunk
    rest: AsyncIterator[Chunk]
    native: bool


# The doors whose requests are chats one deployment can be asked again: a cascade escalates them, shadow
# judging asks the strongest candidate the same.
CHAT_DOORS = frozenset({"chat", "messages"})


class Door(Protocol):
    # The request kind in records and metrics ("chat", "text", "embed", "messages", "responses").
    endpoint: str
    # Whether errors leave in Anthropic's shape rather than OpenAI's.
    anthropic: bool
    # Whether the request is whole only once `StatefulDoor.load` has read the rest of it.
    stateful: bool

    def parse(self, body: dict[str, Any]) -> Parsed: ...

    async def complete(self, provider: Provider, parsed: Parsed) -> Completed: ...

    async def open(self, provider: Provider, parsed: Parsed) -> Opened: ...

    def relay(self, parsed: Parsed, opened: Opened, outcome: Outcome, finish: Finish) -> AsyncIterator[bytes]:
        """The stream as the client receives it, metered on the way; calls `finish` once, however
        it ends."""
        ...


class StatefulDoor(Door, Protocol):
    """A door whose requests refer to what the gateway stored (the Responses API's
    previous_response_id): the pipeline awaits `load` after `parse`, before routing."""

    async def load(self, parsed: Parsed) -> Parsed: ...
