"""`switchyard`: the command line. The entry point builds Settings once and passes it down."""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy.exc import SQLAlchemyError

from gateway.admin.cli import add_admin_commands
from gateway.admin.config_cli import add_config_commands
from gateway.argtypes import int_in
from gateway.config import ConfigError, GatewayConfig, entry_settings
from gateway.db.migrate import SchemaNotCurrentError, ensure_schema_or_defer
from gateway.logsetup import configure_logging
from gateway.offline import prepare_offline_env
from gateway.quality.cli import add_quality_commands
from gateway.route_cli import add_route_commands
from gateway.settings import Settings, SettingsError
from local_backend.cli import add_local_commands


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (exit 2), like every other error here."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app, resolve_config

    overrides = {
        k: v
        for k, v in {
            "config": args.config,
            "host": args.host,
            "port": args.port,
            "workers": args.workers,
            "log_level": args.log_level,
        }.items()
        if v is not None
    }
    # The file's settings first: its log_level is the logging's.
    settings = entry_settings(os.environ, **overrides)
    configure_logging(settings.log_level)
    config = resolve_config(settings, os.environ)
    if settings.master_key is None and config.master_key is None and not _is_loopback(settings.host):
        print(
            f"switchyard: refusing to listen on {settings.host} without a master key; "
            "set SWITCHYARD_MASTER_KEY or bind 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    try:
        # Before binding: SQLite migrates itself, an unmigrated PostgreSQL is refused with a clear message,
        # an unreachable one is checked later (the app's start-up logs it, gateway.readiness re-checks).
        asyncio.run(ensure_schema_or_defer(settings.database_url, warn=False))
    except SchemaNotCurrentError as exc:
        print(f"switchyard: {exc}", file=sys.stderr)
        return 2
    except (OSError, SQLAlchemyError) as exc:
        print(f"switchyard: cannot reach the database: {exc}", file=sys.stderr)
        return 2
    common = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "log_level": settings.log_level,
        "access_log": args.access_log,
        "timeout_graceful_shutdown": settings.shutdown_drain_s,
    }
    # The spend writer runs on its own thread: a short GIL switch interval keeps it from holding the
    # request loop for the default 5 ms.
    sys.setswitchinterval(0.001)
    # SIGHUP reloads the config: each app's lifespan sets that up (with --workers, the supervisor passes
    # it on to them). Until then, and after, it does nothing; its default action would kill the server
    # without draining (uvicorn handles only SIGINT and SIGTERM).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if settings.workers == 1:
        # create_app reads the file (file mode) or the database (seeded from the defaults) itself.
        app = create_app(settings)
        # Startup objects live for the whole process: keep them out of every later collection.
        gc.collect()
        gc.freeze()
        uvicorn.run(app, **common)
    else:
        return _serve_workers(settings, config, common)
    return 0


def _serve_workers(settings: Settings, config: GatewayConfig, common: dict[str, Any]) -> int:
    from gateway.engine_host import EngineHost
    from gateway.supervisor import run_workers

    # One engine process per local model, shared by the workers (gateway/engine_host.py).
    engines = EngineHost.start([d for d in config.models if d.provider == "local"], settings.log_level)
    try:
        # Each worker process builds its own app from the same environment.
        if settings.config is not None:
            os.environ["SWITCHYARD_CONFIG"] = str(settings.config)
        os.environ["SWITCHYARD_LOG_LEVEL"] = settings.log_level
        if engines.urls:
            os.environ["SWITCHYARD_LOCAL_ENGINES"] = json.dumps(engines.urls)
        # uvicorn's supervisor, except that SIGHUP has every worker reload its config rather than
        # replacing every worker (gateway/supervisor.py).
        run_workers("gateway.app:app_from_env", settings.workers, **common)
    finally:
        engines.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="switchyard", description="An OpenAI- and Anthropic-compatible LLM gateway.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the gateway")
    p.add_argument(
        "--config", type=Path, help="YAML config (default: $SWITCHYARD_CONFIG, else embedded defaults)"
    )
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int_in(1, 65535), help="port (default 4000)")
    p.add_argument("--workers", type=int_in(1), help="worker processes (default 1)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--access-log", action="store_true", help="log every request line")
    p.set_defaults(func=serve)
    add_admin_commands(sub)
    add_config_commands(sub)
    add_route_commands(sub)
    add_local_commands(sub)
    add_quality_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    prepare_offline_env()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, SettingsError) as exc:
        print(f"switchyard: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
