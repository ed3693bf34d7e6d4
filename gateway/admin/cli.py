"""`switchyard migrate | teams ... | keys ...`: the admin API's team and key operations from a shell.

They work on the configured database directly (no server needed); an embedded SQLite database is
migrated first, a PostgreSQL one must be current (`switchyard migrate`). `keys create` writes the key,
and only the key, to stdout so that `KEY=$(switchyard keys create --team x)` works; everything meant
for a person goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.admin import service
from gateway.admin.schemas import KeyCreate, KeyOut, TeamCreate, TeamOut
from gateway.auth import CHANNEL
from gateway.config import entry_settings
from gateway.db.engine import make_engine, session_factory
from gateway.db.migrate import SchemaNotCurrentError, ensure_schema, head_revision, upgrade
from gateway.errors import GatewayError
from gateway.redis_client import connect
from gateway.settings import Settings

ACTOR = "cli"
PERIODS = ("daily", "weekly", "monthly", "total")

T = TypeVar("T")


def add_admin_commands(subparsers: Any) -> None:
    """Register `migrate`, `teams` and `keys` on the main CLI's subparsers."""
    p = subparsers.add_parser("migrate", help="bring the configured database to the current schema")
    _config_option(p)
    p.set_defaults(func=cmd_migrate)

    teams = subparsers.add_parser("teams", help="create and list teams").add_subparsers(
        dest="teams_command", required=True
    )
    p = teams.add_parser("create", help="create a team; prints its id")
    p.add_argument("name")
    _limit_options(p)
    _config_option(p)
    p.set_defaults(func=cmd_teams_create)
    p = teams.add_parser("list", help="list the live teams")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    _config_option(p)
    p.set_defaults(func=cmd_teams_list)

    keys = subparsers.add_parser("keys", help="create, list and revoke API keys").add_subparsers(
        dest="keys_command", required=True
    )
    p = keys.add_parser("create", help="create a key; prints it (once, it is not stored)")
    p.add_argument("--team", required=True, help="team name")
    p.add_argument("--name", help="a label for the key")
    _limit_options(p)
    p.add_argument(
        "--expires-at", type=_aware_datetime, help="ISO 8601 with an offset, e.g. 2026-12-31T00:00Z"
    )
    _config_option(p)
    p.set_defaults(func=cmd_keys_create)
    p = keys.add_parser("list", help="list keys (prefixes, never the keys)")
    p.add_argument("--team", help="only this team's keys (team name)")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    _config_option(p)
    p.set_defaults(func=cmd_keys_list)
    p = keys.add_parser("revoke", help="revoke a key by id")
    p.add_argument("id")
    _config_option(p)
    p.set_defaults(func=cmd_keys_revoke)


def _config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        help="YAML config whose settings (database, Redis) to use "
        "(default: $SWITCHYARD_CONFIG, else ./switchyard.yaml when present)",
    )


def _limit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget-usd", type=_money, help="spend cap per budget period, USD")
    p.add_argument("--budget-period", choices=PERIODS, help="default: total")
    p.add_argument("--rpm", type=int, help="requests per minute")
    p.add_argument("--tpm", type=int, help="tokens per minute")


def _money(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal amount: {text!r}") from None


def _aware_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset: add Z or +HH:MM")
    return value


# -- handlers (entry points: each builds its own Settings, as `serve` does) -----------------------


def cmd_migrate(args: argparse.Namespace) -> int:
    url = _settings(args).database_url
    try:
        asyncio.run(upgrade(url))
    except (OSError, SQLAlchemyError) as exc:
        return _fail(f"cannot migrate {_shown(url)}: {_reason(exc)}")
    print(f"database {_shown(url)} is at revision {head_revision()}", file=sys.stderr)
    return 0


def cmd_teams_create(args: argparse.Namespace) -> int:
    data = _build(TeamCreate, name=args.name, **_limits(args))
    if data is None:
        return 2

    async def op(session: AsyncSession) -> TeamOut:
        return TeamOut.model_validate(await service.create_team(session, data, actor=ACTOR))

    team = _run(op, _settings(args).database_url)
    if team is None:
        return 1
    print(team.id)
    print(f"created team {team.name!r}", file=sys.stderr)
    return 0


def cmd_teams_list(args: argparse.Namespace) -> int:
    async def op(session: AsyncSession) -> list[TeamOut]:
        return [TeamOut.model_validate(t) for t in await _all(service.list_teams, session)]

    teams = _run(op, _settings(args).database_url)
    if teams is None:
        return 1
    columns = ("id", "name", "budget_usd", "budget_period", "rpm", "tpm")
    _print_rows(teams, columns, args.json)
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    fields = {"name": args.name, "expires_at": args.expires_at, **_limits(args)}

    async def op(session: AsyncSession) -> tuple[str, KeyOut]:
        team = await service.team_by_name(session, args.team)
        data = KeyCreate(team_id=team.id, **{k: v for k, v in fields.items() if v is not None})
        new = await service.create_key(session, data, actor=ACTOR)
        return new.key, KeyOut.model_validate(new.row)

    # Validate before touching the database, with a placeholder team id, for a clean usage error.
    if _build(KeyCreate, team_id="-", **fields) is None:
        return 2
    result = _run(op, _settings(args).database_url)
    if result is None:
        return 1
    key, row = result
    print(key)
    print(
        f"created key {row.id} ({row.prefix}...) for team {args.team!r}; it is not stored and will not be "
        "shown again",
        file=sys.stderr,
    )
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    async def op(session: AsyncSession) -> list[KeyOut]:
        team_id = None if args.team is None else (await service.team_by_name(session, args.team)).id
        rows = await _all(service.list_keys, session, team_id=team_id)
        return [KeyOut.model_validate(r) for r in rows]

    keys = _run(op, _settings(args).database_url)
    if keys is None:
        return 1
    columns = ("id", "prefix", "name", "team_id", "revoked", "expires_at", "budget_usd", "rpm", "tpm")
    _print_rows(keys, columns, args.json)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def op(session: AsyncSession) -> KeyOut:
        row = await service.revoke_key(session, args.id, actor=ACTOR)
        if settings.redis_url is not None:
            await _publish_invalidation(settings.redis_url, settings.redis_cluster, row.id)
        return KeyOut.model_validate(row)

    row = _run(op, settings.database_url)
    if row is None:
        return 1
    print(f"revoked key {row.id} ({row.prefix}...)", file=sys.stderr)
    if settings.redis_url is None:
        print("running servers drop their cached copy within the auth cache TTL", file=sys.stderr)
    return 0


# -- plumbing -------------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    """What `serve` would run with: the environment over the config file's settings (the database
    and Redis among them)."""
    return entry_settings(os.environ, **({} if args.config is None else {"config": args.config}))


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _fail(message: str) -> int:
    print(f"switchyard: {message}", file=sys.stderr)
    return 1


def _limits(args: argparse.Namespace) -> dict[str, Any]:
    names = ("budget_usd", "budget_period", "rpm", "tpm")
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def _build(model: type[BaseModel], **fields: Any) -> Any:
    try:
        return model(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "input"
            print(f"switchyard: {where.replace('_', '-')}: {err['msg']}", file=sys.stderr)
        return None


def _run(op: Callable[[AsyncSession], Awaitable[T]], url: str) -> T | None:
    """Run `op` in one session on the database at `url`; None (after saying why) on failure."""

    async def main() -> T:
        await ensure_schema(url)
        engine = make_engine(url)
        try:
            async with session_factory(engine)() as session:
                return await op(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except GatewayError as exc:
        _fail(exc.message)
    except SchemaNotCurrentError as exc:
        _fail(str(exc))
    except (OSError, SQLAlchemyError) as exc:
        _fail(f"database {_shown(url)}: {_reason(exc)}")
    return None


def _reason(exc: BaseException) -> BaseException:
    # The driver's own message: SQLAlchemy's adds the statement and its parameters (a key's hash).
    return getattr(exc, "orig", None) or exc


async def _all(
    lister: Callable[..., Awaitable[tuple[list[T], str | None]]], *args: Any, **kw: Any
) -> list[T]:
    out: list[T] = []
    cursor = None
    while True:
        rows, cursor = await lister(*args, limit=1000, cursor=cursor, **kw)
        out.extend(rows)
        if cursor is None:
            return out


async def _publish_invalidation(redis_url: str, cluster: bool, key_id: str) -> None:
    """Tell running servers to drop their cached copy of the key (KeyCache.invalidate's message).

    Only the publish half of a KeyCache: starting a whole one would also start its subscriber, and
    cancelling that mid-read has been seen to hang (redis-py 8.1) a command that should just exit.
    """
    client = connect(redis_url, cluster=cluster, timeout_s=2.0)
    try:
        await client.publish(CHANNEL, f"key:{key_id}")
    except Exception as exc:  # the revoke itself is committed; servers fall back to their TTL
        print(
            f"switchyard: could not notify servers through Redis ({exc}); they catch up within "
            "the auth cache TTL",
            file=sys.stderr,
        )
    finally:
        await client.aclose()


def _print_rows(rows: Sequence[BaseModel], columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        for row in rows:
            print(json.dumps(row.model_dump(mode="json")))
        return
    table = [[_cell(getattr(r, c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(t[i]) for t in table)]) for i, c in enumerate(columns)]
    for line in [list(columns), *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)
