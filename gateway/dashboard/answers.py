"""A short-lived cache of /dashboard/api answers, per process.

A page open on a wall screen, refreshed every few seconds, asks the same ten questions each time; under
load the gateway would spend ~90 ms of CPU a load re-reading rollups that change a little each flush.
An answer is kept for `dashboard_cache_s` seconds (5 by default, 0: off) and served again to the same
viewer (the admins, or one key of a team) asking the same URL. The viewer is found first, as for any
answer, so a revoked key or an expired session gets its 401 at once, never a kept answer. Only 200
answers of GET are kept, up to MAX_ENTRIES (oldest dropped first). The figures a page shows may then
be that many seconds older than the log.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from gateway.dashboard.session import current_viewer

MAX_ENTRIES = 512
MAX_BODY = 2 * 1024 * 1024

Key = tuple[str | None, ...]


class AnswerCache:
    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[Key, tuple[float, Response]] = OrderedDict()

    def get(self, key: Key) -> Response | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: Key, response: Response) -> None:
        self._entries[key] = (self._clock() + self.ttl_s, response)
        self._entries.move_to_end(key)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)


async def _key(request: Request) -> Key:
    viewer = await current_viewer(request)
    return (request.url.path, request.url.query, viewer.role, viewer.team_id, viewer.key_id)


class CachedRoute(APIRoute):
    """The dashboard API's routes: an answer given in the last ttl seconds to the same viewer for the
    same URL is given again without a query."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def cached(request: Request) -> Response:
            cache: AnswerCache | None = request.app.state.dashboard_answers
            if cache is None or request.method != "GET":
                return await handler(request)
            key = await _key(request)
            hit = cache.get(key)
            if hit is not None:
                return hit
            response = await handler(request)
            if response.status_code == 200 and len(getattr(response, "body", b"") or b"") <= MAX_BODY:
                cache.put(key, response)
            return response

        return cached
