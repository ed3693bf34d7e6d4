"""`create_app(settings)`: everything the server needs, built once and handed to the routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from gateway.accounting.queries import durable_spend_reader
from gateway.accounting.thread import WriterThread
from gateway.api import admin, config_admin, health, messages, openai, quality, responses
from gateway.api.docs import install_docs
from gateway.api.openapi_schemas import install_openapi
from gateway.auth import KeyCache
from gateway.config import GatewayConfig, apply_settings, config_path, entry_settings, load_config
from gateway.control import Control
from gateway.dashboard import install_dashboard
from gateway.db.engine import make_engine, session_factory
from gateway.db.migrate import ensure_schema_or_defer
from gateway.defaults import default_config
from gateway.errors import install_handlers
from gateway.limits import create_limiter
from gateway.limits.headroom import Headroom
from gateway.live.filewatch import FileWatch, on_sighup
from gateway.live.preview_api import previewer
from gateway.live.runtime import LiveConfig
from gateway.live.service import ConfigService, embedded_defaults
from gateway.live.store import ConfigStore
from gateway.live.sync import ConfigSync
from gateway.logsetup import configure_logging
from gateway.metrics import Metrics, writer_lines
from gateway.offline import prepare_offline_env
from gateway.pipeline.core import Pipeline
from gateway.planner import RoutePlanner
from gateway.pricing import TokenPrice, load_price_map
from gateway.quality.capture import purge_every
from gateway.quality.shadow import Shadower
from gateway.readiness import Readiness
from gateway.responses.store import ResponseStore
from gateway.settings import Settings
from routing.tokens import encoding

if TYPE_CHECKING:
    from gateway.tracing import Tracing

log = logging.getLogger("switchyard")


def resolve_config(settings: Settings, env: Mapping[str, str]) -> GatewayConfig:
    """The file `config_path` names, else the embedded defaults."""
    path = config_path(settings)
    return default_config(settings) if path is None else load_config(path, env)


def create_app(
    settings: Settings,
    config: GatewayConfig | None = None,
    *,
    env: Mapping[str, str] | None = None,
    planner: RoutePlanner | None = None,
) -> FastAPI:
    prepare_offline_env()
    env = env if env is not None else os.environ
    # Live config (gateway/live/service.py): a --config file is the source of truth; without one the
    # database is, seeded from the embedded defaults; a config object given here is pinned (unless
    # the settings name its file explicitly).
    path = config_path(settings) if config is None else settings.config
    seed_document, live_env = None, dict(env)
    if config is None:
        if path is None:
            config, seed_document, key_env = embedded_defaults(settings)
            live_env.update(key_env)
        else:
            config = load_config(path, env)
        settings = apply_settings(settings, config)
    live = LiveConfig(settings, load_price_map(), config, planner=planner)
    metrics = Metrics()
    tracing = start_tracing(settings)
    pipeline = Pipeline(live, metrics, settings.max_body_bytes, tracing)
    master = settings.master_key.get_secret_value() if settings.master_key else config.master_key
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    config_service = ConfigService(
        ConfigStore(sessions),
        live,
        settings,
        live_env,
        mode="file" if path is not None else "database" if seed_document is not None else "pinned",
        file=path,
        document=seed_document,
    )
    key_cache = KeyCache.from_settings(sessions, settings)
    response_store = ResponseStore(sessions, settings.responses_retention_days)
    writer = WriterThread(
        settings.database_url,
        spool_dir=str(settings.spool_dir),
        batch_size=settings.spend_batch_size,
        flush_interval_s=settings.spend_flush_interval_s,
    )
    shadower = Shadower(
        live,
        sessions,
        writer.submit,
        queue_size=settings.shadow_queue_size,
        workers=settings.shadow_workers,
        seed=settings.shadow_seed,
    )
    readiness = Readiness(
        settings, lambda: live.current.providers, writer.stats, config_version=lambda: live.version
    )
    # Every replica on the newest version: a change made here is announced on Redis; announcements
    # heard, and the poll that heals lost ones, refresh this replica (gateway/live/sync.py).
    config_sync = ConfigSync.from_settings(
        settings,
        current_version=config_service.store.current_version,
        live_version=lambda: live.version,
        refresh=config_service.refresh,
    )
    config_service.on_applied.append(config_sync.publish)
    # File mode: the file is reloaded when its content changes, and on SIGHUP (gateway/live/filewatch.py).
    file_watch = (
        FileWatch(path, config_service.reload_file, settings.config_watch_interval_s)
        if config_service.mode == "file" and path is not None
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Local models load on their own threads from the first moment (seconds each), so /health/live
        # answers at once and /health/ready says not_ready until they have; requests meanwhile wait.
        live.start_loading()
        # SQLite (embedded) migrates itself; an unmigrated PostgreSQL refuses to start; an unreachable
        # one does not stop the start (readiness checks its schema once it answers).
        schema_checked = await ensure_schema_or_defer(settings.database_url)
        limiter = await create_limiter(
            settings.redis_url,
            settings.limits_fail_mode,
            cluster=settings.redis_cluster,
            timeout_s=settings.redis_timeout_s,
            # Budgets Redis lost (or the per-process limiter first sees) count from the database.
            reseed=durable_spend_reader(sessions, writer),
            reconcile_interval_s=settings.limits_reconcile_interval_s,
        )
        await writer.start()
        await key_cache.start(settings.redis_url, cluster=settings.redis_cluster)
        await readiness.start(schema_checked)
        response_store.start()
        if config_service.mode != "pinned":
            # Before the service starts, so a version it records at start (a changed file) is announced.
            await config_sync.start()
        await config_service.start(database_reachable=schema_checked)
        # Token counts (TPM estimates, budget reservations, routing) need the BPE table: loading it
        # took ~0.9 s of the first counting request here (cProfile), which belongs to start-up.
        await asyncio.to_thread(encoding)
        headroom = Headroom(settings.limits_overlap_margin) if settings.limits_overlap_margin < 1 else None
        pipeline.control = Control(limiter, writer, headroom)
        await shadower.start()
        pipeline.shadow = shadower
        purging = asyncio.create_task(purge_every(engine, settings.capture_purge_interval_s))
        metrics.sources = [
            writer_lines(writer),
            getattr(limiter, "metrics_lines", list),
            pipeline.control.metrics_lines,
            shadower.metrics_lines,
        ]
        _announce(live.current.config, live.current.prices, master is not None)
        if file_watch is not None:
            await file_watch.start()
        # SIGHUP reloads (the file, or the newest stored version) instead of killing the process.
        stop_sighup = on_sighup(file_watch.request if file_watch is not None else config_sync.wake)
        try:
            yield
        finally:
            if stop_sighup is not None:
                stop_sighup()
            if file_watch is not None:
                await file_watch.aclose()
            await config_sync.aclose()
            purging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purging
            await shadower.aclose()
            # In-flight requests have finished (uvicorn drains them first): settle, then flush.
            await live.aclose()
            await limiter.aclose()
            await writer.stop()
            await key_cache.aclose()
            await readiness.aclose()
            await response_store.aclose()
            await engine.dispose()
            if tracing is not None:
                await asyncio.to_thread(tracing.shutdown)

    app = FastAPI(title="Switchyard", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.pipeline = pipeline
    app.state.live = live
    app.state.config_service = config_service
    app.state.config_preview = previewer(live, sessions)
    app.state.master_key = master.encode() if master else None
    app.state.sessions = sessions
    app.state.key_cache = key_cache
    app.state.responses = response_store
    app.state.readiness = readiness
    app.state.shadower = shadower
    install_handlers(app)
    app.include_router(openai.router)
    app.include_router(health.router)
    app.include_router(messages.router)
    app.include_router(responses.router)
    app.include_router(admin.router)
    app.include_router(config_admin.router)
    app.include_router(quality.feedback_router)
    app.include_router(quality.admin_router)
    install_dashboard(app)
    install_openapi(app)
    config_admin.install_schemas(app)
    install_docs(app)
    return app


def start_tracing(settings: Settings) -> Tracing | None:
    """The tracer when an OTLP endpoint is set; its modules are imported only then."""
    if settings.otel_endpoint is None:
        return None
    try:
        from gateway.tracing import Tracing
    except ImportError as exc:
        raise RuntimeError(
            "SWITCHYARD_OTEL_ENDPOINT is set but OpenTelemetry is not installed: "
            "pip install 'switchyard[otel]'"
        ) from exc
    log.info("tracing: OTLP/HTTP to %s", settings.otel_endpoint)
    return Tracing(settings.otel_endpoint, settings.otel_service_name, settings.otel_export_interval_s)


def _announce(config: GatewayConfig, prices: Mapping[str, TokenPrice | None], auth: bool) -> None:
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
    # SIGHUP reloads the config once the app has started (its lifespan); until then it does nothing.
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # The file's settings too (its log_level is the logging's); create_app reads the rest itself.
    settings = entry_settings(os.environ)
    # A worker's own log lines (uvicorn configures only its own loggers in each worker process).
    configure_logging(settings.log_level)
    return create_app(settings)
