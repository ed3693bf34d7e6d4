"""`switchyard migrate | teams | keys` against SQLite files and a fresh PostgreSQL database."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.admin.cli import add_admin_commands
from gateway.auth import KeyCache, hash_key
from gateway.db.engine import make_engine, session_factory
from gateway.db.migrate import head_revision
from gateway.db.models import ApiKey, AuditLog
from tests.stores import create_pg_database, drop_pg_database, pg_url

REPO = Path(__file__).resolve().parents[3]


class Cli:
    """The admin commands on a parser of their own, run in a thread (each handler calls asyncio.run)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.parser = argparse.ArgumentParser(prog="switchyard")
        add_admin_commands(self.parser.add_subparsers(dest="command", required=True))

    async def __call__(self, *argv: str) -> tuple[int, str, str]:
        def main() -> int:
            try:
                args = self.parser.parse_args(argv)
                return int(args.func(args))
            except SystemExit as exc:  # argparse usage errors
                return int(exc.code or 0)

        self.capsys.readouterr()
        code = await asyncio.to_thread(main)
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    monkeypatch.chdir(tmp_path)  # no stray .env, no default database in the repo
    monkeypatch.delenv("SWITCHYARD_REDIS_URL", raising=False)
    monkeypatch.setenv("SWITCHYARD_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    return Cli(capsys)


async def test_teams_and_keys_from_the_shell(cli: Cli, tmp_path: Path) -> None:
    code, out, err = await cli("teams", "create", "research", "--budget-usd", "10.5", "--rpm", "5")
    assert code == 0, err
    team_id = out.strip()
    assert len(team_id) == 32 and "research" in err

    code, _, err = await cli("teams", "create", "research")
    assert code == 1 and "already exists" in err
    assert (await cli("teams", "create", "x", "--rpm", "0"))[0] == 2
    assert (await cli("teams", "create", "x", "--budget-usd", "lots"))[0] == 2

    code, out, err = await cli(
        "keys",
        "create",
        "--team",
        "research",
        "--name",
        "ci",
        "--tpm",
        "100",
        "--expires-at",
        "2031-01-01T00:00Z",
    )
    assert code == 0, err
    key = out.removesuffix("\n")
    assert out == key + "\n" and key.startswith("sk-sy-") and "\n" not in key
    assert key not in err and key[:10] in err

    assert (await cli("keys", "create", "--team", "nope"))[:3:2] == (1, "switchyard: team not found\n")
    assert (await cli("keys", "create", "--team", "research", "--rpm", "-1"))[0] == 2
    assert (await cli("keys", "create", "--team", "research", "--expires-at", "2031-01-01"))[0] == 2

    code, out, _ = await cli("teams", "list")
    assert code == 0 and team_id in out and "10.5" in out
    code, out, _ = await cli("teams", "list", "--json")
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["research"]

    code, out, _ = await cli("keys", "list", "--team", "research")
    assert code == 0 and key[:10] in out and key not in out
    code, out, _ = await cli("keys", "list", "--json")
    (listed,) = [json.loads(line) for line in out.splitlines()]
    assert (listed["name"], listed["tpm"], listed["team_id"]) == ("ci", 100, team_id)
    assert key not in out and hash_key(key) not in out

    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    engine = make_engine(url)
    try:
        cache = KeyCache(session_factory(engine))
        assert await cache.lookup(key) is not None
        code, _, err = await cli("keys", "revoke", listed["id"])
        assert code == 0 and "revoked" in err
        cache.drop_local()  # no Redis here: a server would notice within its TTL
        assert await cache.lookup(key) is None
        assert (await cli("keys", "revoke", "nope"))[0] == 1
        async with session_factory(engine)() as session:
            audits = list((await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars())
            row = await session.get(ApiKey, listed["id"])
    finally:
        await engine.dispose()
    assert [(a.actor, a.action) for a in audits] == [
        ("cli", "team.create"),
        ("cli", "key.create"),
        ("cli", "key.revoke"),
    ]
    assert all(key not in repr(a.detail) and hash_key(key) not in repr(a.detail) for a in audits)
    assert row is not None and row.revoked and row.key_hash == hash_key(key)


@pytest.mark.parametrize("given_by", ["environment", "config"])
async def test_revoke_reaches_running_servers_through_redis(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suite_redis_url: str, given_by: str
) -> None:
    assert (await cli("teams", "create", "t"))[0] == 0
    key = (await cli("keys", "create", "--team", "t"))[1].strip()
    key_id = json.loads((await cli("keys", "list", "--json"))[1])["id"]
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    server_cache = KeyCache(session_factory(engine), ttl_s=3600.0)
    await server_cache.start(suite_redis_url)
    try:
        await asyncio.sleep(0.3)  # let the listener subscribe
        assert await server_cache.lookup(key) is not None
        if given_by == "environment":
            monkeypatch.setenv("SWITCHYARD_REDIS_URL", suite_redis_url)
            assert (await cli("keys", "revoke", key_id))[0] == 0
        else:  # a LiteLLM file's router_settings, as `serve` reads it
            cfg = tmp_path / "config.yaml"
            cfg.write_text(f"model_list: []\nrouter_settings: {{redis_url: '{suite_redis_url}'}}\n")
            code, _, err = await cli("keys", "revoke", key_id, "--config", str(cfg))
            assert code == 0 and "auth cache TTL" not in err, err
        for _ in range(100):
            if await server_cache.lookup(key) is None:
                break
            await asyncio.sleep(0.02)
        assert await server_cache.lookup(key) is None
    finally:
        await server_cache.aclose()
        await engine.dispose()


def _revision(db: Path) -> str | None:
    if not db.exists():
        return None
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]


@pytest.mark.parametrize(
    "config",
    [
        # The only model's key is unset: no model left to serve, which only `serve` minds.
        "models: [{name: gpt, model: gpt-4o, api_key: '${OPENAI_API_KEY}'}]\n"
        "settings: {database_url: '${DB}'}\n",
        # Nor does an unset master key stop it: only the settings are read.
        "model_list: [{model_name: gpt, litellm_params: {model: openai/gpt-4o,"
        " api_key: os.environ/OPENAI_API_KEY}}]\n"
        "general_settings: {database_url: os.environ/DB, master_key: os.environ/LITELLM_MASTER_KEY}\n",
    ],
    ids=["native", "litellm"],
)
async def test_admin_commands_use_the_config_files_database(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: str
) -> None:
    monkeypatch.delenv("SWITCHYARD_DATABASE_URL")
    for unset in ("OPENAI_API_KEY", "LITELLM_MASTER_KEY"):
        monkeypatch.delenv(unset, raising=False)
    monkeypatch.setenv("DB", f"sqlite:///{tmp_path / 'file.db'}")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(config)
    # Named by SWITCHYARD_CONFIG as by --config, as `serve` reads it.
    monkeypatch.setenv("SWITCHYARD_CONFIG", str(cfg))
    code, _, err = await cli("migrate")
    assert code == 0 and "file.db" in err, err
    assert _revision(tmp_path / "file.db") == head_revision()
    monkeypatch.delenv("SWITCHYARD_CONFIG")
    assert (await cli("teams", "create", "ops", "--config", str(cfg)))[0] == 0
    code, key, err = await cli("keys", "create", "--team", "ops", "--config", str(cfg))
    assert code == 0, err
    engine = make_engine(os.environ["DB"])
    try:
        assert await KeyCache(session_factory(engine)).lookup(key.strip()) is not None
    finally:
        await engine.dispose()
    assert not (tmp_path / "switchyard.db").exists()


@pytest.fixture
async def fresh_pg() -> AsyncIterator[str]:
    name = await create_pg_database("admin_cli")
    try:
        yield pg_url(name)
    finally:
        await drop_pg_database(name)


async def test_postgresql_needs_migrate_first(
    cli: Cli, fresh_pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHYARD_DATABASE_URL", fresh_pg)
    code, _, err = await cli("teams", "list")
    assert code == 1 and "switchyard migrate" in err
    code, _, err = await cli("migrate")
    assert code == 0 and "revision" in err
    assert (await cli("migrate"))[0] == 0  # again: nothing to do
    code, out, err = await cli("teams", "create", "prod")
    assert code == 0, err
    code, out, err = await cli("keys", "create", "--team", "prod")
    assert code == 0 and out.startswith("sk-sy-"), err


def test_switchyard_command(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    env.update(SWITCHYARD_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'sub.db'}", PYTHONPATH=str(REPO))

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,
        )

    team = run("teams", "create", "ops")
    assert team.returncode == 0, team.stderr
    created = run("keys", "create", "--team", "ops")
    assert created.returncode == 0, created.stderr
    key = created.stdout.removesuffix("\n")
    assert key.startswith("sk-sy-") and created.stdout == key + "\n"
    listed = run("keys", "list")
    assert listed.returncode == 0 and key[:10] in listed.stdout and key not in listed.stdout + listed.stderr
