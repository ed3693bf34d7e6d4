"""The one mutable thing about the config: which snapshot is current.

A request `enter`s the current snapshot and `leave`s it when it is recorded; `apply` swaps in a new
one at once. A provider no longer in the current snapshot is closed once the last request of every
snapshot that holds it has left, so a change never cuts a call in flight.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway.config import GatewayConfig
from gateway.live.snapshot import Snapshot, build_snapshot
from gateway.planner import RoutePlanner
from gateway.readiness import LoadsModel
from gateway.settings import Settings
from providers.base import Provider

log = logging.getLogger("switchyard.config")


class LiveConfig:
    def __init__(
        self,
        settings: Settings,
        price_map: dict[str, Any],
        config: GatewayConfig,
        version: int = 0,
        planner: RoutePlanner | None = None,
    ) -> None:
        self._settings = settings
        self._price_map = price_map
        self.current = build_snapshot(config, version, settings, price_map, planner=planner)
        # Replaced snapshots that requests still run on.
        self._retired: list[Snapshot] = []
        self._closing: set[asyncio.Task[Any]] = set()
        self._started = False

    def start_loading(self) -> None:
        """Local models load on their own threads from now on (and those a change adds, at once)."""
        self._started = True
        for provider in self.current.providers.values():
            if isinstance(provider, LoadsModel):
                provider.start_loading()

    @property
    def price_map(self) -> dict[str, Any]:
        return self._price_map

    @property
    def version(self) -> int:
        return self.current.version

    def enter(self) -> Snapshot:
        snap = self.current
        snap.users.count += 1
        return snap

    def in_flight(self) -> int:
        """Requests (and background jobs) inside any snapshot now."""
        return self.current.users.count + sum(s.users.count for s in self._retired)

    def leave(self, snap: Snapshot | None) -> None:
        if snap is None:
            return
        snap.users.count -= 1
        if snap.users.count == 0 and snap is not self.current and snap in self._retired:
            self._retired.remove(snap)
            self._release(snap)

    def apply(self, config: GatewayConfig, version: int) -> Snapshot:
        """Swap in `config` as `version`; returns the new snapshot."""
        old = self.current
        new = build_snapshot(config, version, self._settings, self._price_map, previous=old)
        if self._started:
            kept = {id(p) for p in old.providers.values()}
            for provider in new.providers.values():
                if id(provider) not in kept and isinstance(provider, LoadsModel):
                    provider.start_loading()
        self.current = new
        if old.users.count:
            self._retired.append(old)
        else:
            self._release(old)
        log.info("config version %d applied (was %d)", version, old.version)
        return self.current

    def providers(self) -> list[Provider]:
        """Every provider a snapshot in use holds."""
        seen: dict[int, Provider] = {}
        for snap in (self.current, *self._retired):
            for p in snap.providers.values():
                seen[id(p)] = p
        return list(seen.values())

    def _release(self, dropped: Snapshot) -> None:
        """Close the providers of `dropped` that no snapshot in use holds."""
        held = {id(p) for p in self.providers()}
        for p in dropped.providers.values():
            if id(p) not in held:
                self._spawn_close(p)

    def _spawn_close(self, provider: Provider) -> None:
        try:
            task = asyncio.get_running_loop().create_task(provider.aclose())
        except RuntimeError:
            return
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        await asyncio.gather(*(p.aclose() for p in self.providers()), return_exceptions=True)
        await asyncio.gather(*self._closing, return_exceptions=True)
