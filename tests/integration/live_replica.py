"""A gateway replica that follows the database's config versions: `python -m tests.integration.live_replica
--port N`, configured by the environment like `switchyard serve` (SWITCHYARD_CONFIG: the config it
starts on; SWITCHYARD_DATABASE_URL, SWITCHYARD_REDIS_URL, SWITCHYARD_CONFIG_CHANNEL...).

It is `create_app` plus a ConfigSync started in its lifespan, driving a `refresh` that loads the
newest stored version (ConfigStore.latest), parses it with gateway.config.parse_config and applies it
with LiveConfig.apply: the path the config service's refresh() takes, until that service is wired
into create_app (then this file gives way to `switchyard serve`).
"""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from gateway.app import create_app, resolve_config
from gateway.config import apply_settings, entry_settings, parse_config
from gateway.live.store import ConfigStore
from gateway.live.sync import ConfigSync
from gateway.logsetup import configure_logging


def follow_the_database(app: FastAPI) -> None:
    live = app.state.live
    store = ConfigStore(app.state.sessions)
    settings = app.state.settings

    async def refresh() -> bool:
        latest = await store.latest()
        if latest is None or latest.version <= live.version:
            return False
        live.apply(parse_config(latest.document, os.environ), latest.version)
        return True

    sync = ConfigSync.from_settings(
        settings, current_version=store.current_version, live_version=lambda: live.version, refresh=refresh
    )
    app.state.config_sync = sync
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[None]:
        async with inner(a):
            await sync.start()
            try:
                yield
            finally:
                await sync.aclose()

    app.router.lifespan_context = lifespan


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    settings = entry_settings(os.environ, host="127.0.0.1", port=args.port)
    configure_logging(settings.log_level)
    config = resolve_config(settings, os.environ)
    app = create_app(apply_settings(settings, config), config)
    follow_the_database(app)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
