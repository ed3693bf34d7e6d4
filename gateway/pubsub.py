"""A Redis pub/sub subscription that outlives Redis restarts, for the replicas' broadcast channels
(key invalidations: gateway/auth.py; config versions: gateway/live/sync.py).

`listen` subscribes, tells its owner (`on_subscribed`: anything may have been missed while it was
not listening), hands each message to `on_message`, and PINGs a quiet subscription every `ping_s`
(then calls `on_idle`): a connection that answers nothing for `2 * ping_s` counts as lost, like one
that fails. A lost subscription is reported once to `on_lost` and tried again every `reconnect_s`
until it is back. It runs until cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

# A silent subscription (no message, no PONG) for twice this long counts as lost.
PING_S = 5.0
RECONNECT_S = 1.0


async def listen(
    redis: Any,
    channel: str,
    *,
    on_message: Callable[[bytes], None],
    on_subscribed: Callable[[], Awaitable[None]],
    on_lost: Callable[[Exception], None],
    on_idle: Callable[[], Awaitable[None]] | None = None,
    ping_s: float = PING_S,
    reconnect_s: float = RECONNECT_S,
) -> None:
    """`on_message` runs on the listening task: it must not wait (start a task for slow work)."""
    while True:
        pubsub = redis.pubsub()
        try:
            await pubsub.subscribe(channel)
            await on_subscribed()
            await _consume(pubsub, on_message, on_idle, ping_s)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), reconnect_s)
            raise
        except Exception as exc:  # keep listening through Redis restarts
            on_lost(exc)
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        await asyncio.sleep(reconnect_s)


async def _consume(
    pubsub: Any,
    on_message: Callable[[bytes], None],
    on_idle: Callable[[], Awaitable[None]] | None,
    ping_s: float,
) -> None:
    loop = asyncio.get_running_loop()
    heard = loop.time()
    while True:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=ping_s)
        now = loop.time()
        if message is None:
            if now - heard > 2 * ping_s:
                raise ConnectionError("no answer to PING on the subscription")
            await pubsub.ping()
            if on_idle is not None:
                await on_idle()
            continue
        heard = now
        if message.get("type") != "message":
            continue  # a PONG
        on_message(message["data"])
