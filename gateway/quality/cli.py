"""`switchyard quality purge` (captured prompts past their retention) and `switchyard quality export`
(labelled traffic as training rows, gateway.quality.export)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import entry_settings
from gateway.db.engine import make_engine
from gateway.db.migrate import SchemaNotCurrentError, ensure_schema
from gateway.quality.capture import purge
from gateway.quality.export import export_jsonl

T = TypeVar("T")


def add_quality_commands(subparsers: Any) -> None:
    quality = subparsers.add_parser("quality", help="captured prompts and labelled traffic").add_subparsers(
        dest="quality_command", required=True
    )
    p = quality.add_parser("purge", help="delete captured prompts past their team's retention")
    p.add_argument("--config", type=Path, help="config file whose settings name the database")
    p.set_defaults(func=cmd_purge)
    p = quality.add_parser("export", help="labelled traffic as training rows (JSON lines)")
    p.add_argument("--out", type=Path, required=True, help="file to write")
    p.add_argument("--team-id", help="one team's traffic (default: every team's)")
    p.add_argument("--since", type=date.fromisoformat, help="first UTC day, YYYY-MM-DD")
    p.add_argument("--config", type=Path, help="config file whose settings name the database")
    p.set_defaults(func=cmd_export)


def cmd_purge(args: argparse.Namespace) -> int:
    gone = _run(args, purge)
    if gone is None:
        return 1
    print(f"purged {gone} captured prompts", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    since = None if args.since is None else datetime.combine(args.since, time(), UTC)
    n = _run(args, lambda engine: export_jsonl(engine, args.out, team_id=args.team_id, since=since))
    if n is None:
        return 1
    print(f"wrote {n} rows to {args.out}", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace, op: Callable[[AsyncEngine], Awaitable[T]]) -> T | None:
    settings = entry_settings(os.environ, **({} if args.config is None else {"config": args.config}))
    url = settings.database_url

    async def main() -> T:
        await ensure_schema(url)
        engine = make_engine(url)
        try:
            return await op(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except SchemaNotCurrentError as exc:
        print(f"switchyard: {exc}", file=sys.stderr)
    except (OSError, SQLAlchemyError) as exc:
        print(f"switchyard: database unavailable: {type(exc).__name__}", file=sys.stderr)
    return None
