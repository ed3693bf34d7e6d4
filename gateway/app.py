"""`create_app(settings)`: everything the server needs, built once and handed to the routes."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from gateway.api import health, messages, openai
from gateway.config import GatewayConfig, load_config
from gateway.defaults import default_config
from gateway.dispatch import Dispatcher
from gateway.errors import install_handlers
from gateway.metrics import Metrics
from gateway.offline import prepare_offline_env
from gateway.planner import InOrderPlanner, RoutePlanner
from gateway.pricing import load_price_map, price_for
from gateway.proxy import Proxy
from gateway.registry import build_providers
from gateway.settings import Settings

log = logging.getLogger("switchyard")


DEFAULT_CONFIG_FILE = Path("switchyard.yaml")


def resolve_config(settings: Settings, env: Mapping[str, str]) -> GatewayConfig:
    """--config / SWITCHYARD_CONFIG, else ./switchyard.yaml when present, else the embedded defaults."""
    if settings.config is not None:
        return load_config(settings.config, env)
    if DEFAULT_CONFIG_FILE.is_file():
        return load_config(DEFAULT_CONFIG_FILE, env)
    return default_config(settings)


def create_app(
    settings: Settings,
    config: GatewayConfig | None = None,
    *,
    env: Mapping[str, str] | None = None,
    planner: RoutePlanner | None = None,
) -> FastAPI:
    prepare_offline_env()
    config = (
        config if config is not None else resolve_config(settings, env if env is not None else os.environ)
    )
    needs_map = any(d.price is None and d.provider != "local" for d in config.models)
    price_map = load_price_map() if needs_map else {}
    prices = {d.id: price_for(d, price_map) for d in config.models}
    providers = build_providers(config.models)
    dispatcher = Dispatcher(providers, config.models, settings)
    proxy = Proxy(config, dispatcher, prices, planner or InOrderPlanner(), Metrics(), settings.max_body_bytes)
    master = settings.master_key.get_secret_value() if settings.master_key else config.master_key

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _announce(config, prices, master is not None)
        yield
        await asyncio.gather(*(p.aclose() for p in providers.values()), return_exceptions=True)

    app = FastAPI(title="Switchyard", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.proxy = proxy
    app.state.master_key = master.encode() if master else None
    install_handlers(app)
    app.include_router(openai.router)
    app.include_router(health.router)
    app.include_router(messages.router)
    return app


def _announce(config: GatewayConfig, prices: dict[str, object], auth: bool) -> None:
    if not config.models:
        log.warning(
            "no models configured: set OPENAI_API_KEY / ANTHROPIC_API_KEY / GEMINI_API_KEY or --config"
        )
    for dep in config.models:
        where = dep.api_base or "default endpoint"
        priced = "" if prices.get(dep.id) is not None else " (no price known: cost reported as unknown)"
        log.info(
            "serving %s -> %s:%s at %s, tier %s%s", dep.name, dep.provider, dep.model, where, dep.tier, priced
        )
    for name, route in config.routes.items():
        log.info("route %s -> %s", name, " > ".join(route.candidates))
    log.info("authentication: %s", "master key" if auth else "none (loopback only)")


def app_from_env() -> FastAPI:
    """uvicorn's factory for `--workers N`: each worker process is its own entry point."""
    return create_app(Settings())
