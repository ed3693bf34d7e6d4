"""Acceptance tests of "Accounting and control": real PostgreSQL and Redis, real gateway processes.

What is here:
  pg_url           one migrated PostgreSQL database for the whole session (dropped at its end); every
                   test makes its own team and key and reads back only that key's rows
  redis_url        a dedicated Redis logical database (REDIS_DB), flushed once at session start
  upstream         the fake OpenAI upstream (tests.fakes.openai_upstream) on a ServerThread
  GatewayProcess   `python -m gateway.cli serve` as a subprocess, stdout/stderr to files
  TcpProxy         a loopback TCP proxy whose connections can be cut, to take PostgreSQL "down"
  new_key          a team and a virtual key made through gateway.admin.service on the database
  chat             one raw-HTTP chat call, streamed or not, with what came back
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
import pytest
import redis
import yaml
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.admin import service
from gateway.admin.schemas import KeyCreate, TeamCreate
from gateway.db.engine import make_engine, session_factory
from gateway.db.migrate import upgrade
from gateway.db.models import DailySpend, RequestLog
from tests.fakes import openai_upstream
from tests.fakes.server import ServerThread, closed_port

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_SERVER = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}"
# A logical database of its own, so FLUSHDB at the start touches nobody else's keys.
REDIS_DB = 12
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
MASTER_KEY = "sk-master-integration-test"
MTOK = Decimal(1_000_000)
COMPLETION_TOKENS = openai_upstream.COMPLETION_TOKENS
ACTOR = "integration-test"

# Every virtual key this session made, with the database it lives in: the leak scan (test_shared_redis)
# looks for all of them.
CREATED_KEYS: list[tuple[str, str]] = []


def free_port() -> int:
    return closed_port()


def pg_url_for(name: str, host: str = PG_HOST, port: int = PG_PORT) -> str:
    return f"postgresql+asyncpg://postgres@{host}:{port}/{name}"


# --------------------------------------------------------------------------- databases


@pytest.fixture(scope="session")
async def pg_name() -> AsyncIterator[str]:
    name = f"sy_integration_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    try:
        await upgrade(pg_url_for(name))
        yield name
    finally:
        admin = create_async_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            await admin.dispose()


@pytest.fixture(scope="session")
def pg_url(pg_name: str) -> str:
    """The session's migrated PostgreSQL database (direct, no proxy)."""
    return pg_url_for(pg_name)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL, emptied at the start and at the end of the session (that logical database only)."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1.0)
    try:
        client.ping()
        client.flushdb()
        yield REDIS_URL
        client.flushdb()
    finally:
        client.close()


# --------------------------------------------------------------------------- the fake upstream


@pytest.fixture(scope="session")
def upstream() -> Iterator[ServerThread]:
    with ServerThread(openai_upstream.create_app(hang_seconds=2.0)) as srv:
        yield srv


def deployment(name: str, upstream_url: str, price_in: float, price_out: float) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai_compatible",
        "model": "gpt-4o-mini",
        "api_base": upstream_url + "/v1",
        "api_key": "sk-upstream-integration",
        "timeout": 10.0,
        "connect_timeout": 2.0,
        "price": {"input_per_mtok": price_in, "output_per_mtok": price_out},
    }


def write_config(path: Path, models: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"models": models}))
    return path


def expected_cost(prompt: int, completion: int, price_in: Decimal, price_out: Decimal) -> Decimal:
    return (prompt * price_in + completion * price_out) / MTOK


# --------------------------------------------------------------------------- teams and keys


@dataclass(frozen=True)
class Credentials:
    team_id: str
    key_id: str
    key: str  # plaintext, as create_key returned it once


async def new_key(
    url: str, *, team: dict[str, Any] | None = None, key: dict[str, Any] | None = None
) -> Credentials:
    """A team and one virtual key, made with the admin service straight on the database."""
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session:
            t = await service.create_team(
                session, TeamCreate(name=f"it-{uuid.uuid4().hex[:10]}", **(team or {})), actor=ACTOR
            )
            made = await service.create_key(session, KeyCreate(team_id=t.id, **(key or {})), actor=ACTOR)
    finally:
        await engine.dispose()
    CREATED_KEYS.append((url, made.key))
    return Credentials(t.id, made.row.id, made.key)


async def log_rows(url: str, key_id: str) -> list[RequestLog]:
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session:
            return list(
                (await session.execute(select(RequestLog).where(RequestLog.key_id == key_id))).scalars()
            )
    finally:
        await engine.dispose()


async def daily_rows(url: str, key_id: str) -> list[DailySpend]:
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session:
            return list(
                (await session.execute(select(DailySpend).where(DailySpend.key_id == key_id))).scalars()
            )
    finally:
        await engine.dispose()


async def wait_rows(url: str, key_id: str, want: int, within_s: float = 30.0) -> list[RequestLog]:
    """Poll until the key has `want` rows (or `within_s` passed); returns the last read."""
    deadline = time.monotonic() + within_s
    while True:
        rows = await log_rows(url, key_id)
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.2)


def assert_daily_matches(rows: list[RequestLog], daily: list[DailySpend]) -> None:
    """daily_spend is the exact aggregate of the log rows: nothing counted twice or missed."""
    assert sum(d.requests for d in daily) == len(rows)
    assert sum(d.prompt_tokens for d in daily) == sum(r.prompt_tokens for r in rows)
    assert sum(d.completion_tokens for d in daily) == sum(r.completion_tokens for r in rows)
    assert sum((d.cost_usd for d in daily), Decimal(0)) == sum(
        (r.cost_usd or Decimal(0) for r in rows), Decimal(0)
    )
    assert sum(d.errors for d in daily) == sum(1 for r in rows if r.status >= 400 or r.error_type)


def spill_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("spill-*.jsonl*")) if directory.exists() else []


# --------------------------------------------------------------------------- raw chat calls


def words(n: int, tag: str = "w") -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


@dataclass
class Call:
    """What one chat call came to, as the client saw it."""

    status: int | None = None
    request_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    completed: bool = False  # the whole answer arrived (for a stream: through [DONE])
    error: str | None = None  # transport failure

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.completed


async def chat(
    client: httpx.AsyncClient,
    base_url: str,
    key: str,
    *,
    model: str,
    content: str,
    stream: bool = False,
    max_tokens: int | None = None,
) -> Call:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": content}]}
    if stream:
        body["stream"] = True
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    call = Call()
    try:
        async with client.stream(
            "POST",
            base_url + "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {key}"},
        ) as resp:
            call.status = resp.status_code
            call.headers = dict(resp.headers)
            call.request_id = resp.headers.get("x-switchyard-request-id")
            raw = await resp.aread()
        if stream and call.status == 200:
            call.body = raw.decode()
            call.completed = call.body.rstrip().endswith("data: [DONE]")
        else:
            call.body = orjson.loads(raw) if raw else None
            call.completed = True
    except httpx.HTTPError as exc:
        call.error = f"{type(exc).__name__}: {exc}"
    return call


# --------------------------------------------------------------------------- gateway subprocesses


class GatewayProcess:
    """`switchyard serve` in a subprocess on 127.0.0.1:<free port>, stdout and stderr to files."""

    def __init__(
        self,
        name: str,
        config: Path,
        workdir: Path,
        env: dict[str, str],
        *,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        self.spool_dir = workdir / f"{name}-spool"
        base = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
        self.env = {
            **base,
            "PYTHONUNBUFFERED": "1",
            "SWITCHYARD_MASTER_KEY": MASTER_KEY,
            "SWITCHYARD_SPOOL_DIR": str(self.spool_dir),
            "SWITCHYARD_LOCAL_MODEL": "false",
            **env,
        }
        self.args = [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(config),
            "--port",
            str(self.port),
            "--host",
            "127.0.0.1",
            *extra_args,
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self._files: list[IO[bytes]] = []

    def start(self) -> GatewayProcess:
        out = self.stdout_path.open("ab")
        err = self.stderr_path.open("ab")
        self._files = [out, err]
        self.proc = subprocess.Popen(
            self.args, cwd=self.workdir, env=self.env, stdout=out, stderr=err, stdin=subprocess.DEVNULL
        )
        return self

    def output(self) -> str:
        parts = []
        for p in (self.stdout_path, self.stderr_path):
            if p.exists():
                parts.append(p.read_text(errors="replace"))
        return "\n".join(parts)

    def tail(self, n: int = 3000) -> str:
        return self.output()[-n:]

    async def wait_ready(self, within_s: float = 60.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + within_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"{self.name} exited with {self.proc.returncode} before it was ready:\n{self.tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url + "/health/ready")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} not ready after {within_s}s:\n{self.tail()}")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    async def wait_exit(self, within_s: float = 45.0) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + within_s
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} still running {within_s}s after SIGTERM:\n{self.tail()}")
            await asyncio.sleep(0.05)
        self._close_files()
        return self.proc.returncode

    async def stop(self, within_s: float = 45.0) -> int:
        self.signal(signal.SIGTERM)
        return await self.wait_exit(within_s)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self._close_files()

    def _close_files(self) -> None:
        for f in self._files:
            with contextlib.suppress(OSError):
                f.close()
        self._files = []


# --------------------------------------------------------------------------- a cuttable TCP proxy


class TcpProxy:
    """127.0.0.1:<port> -> target, on its own event loop thread.

    cut(): every open connection is aborted (RST) and the listening socket closed, so new connects are
    refused at once; restore(): listen again on the same port. `reply_delay_s` holds back what the
    target sends (a slow server)."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.accepted = 0
        self.aborted = 0
        self.reply_delay_s = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    def _call(self, fn: Callable[[], Awaitable[None]]) -> None:
        asyncio.run_coroutine_threadsafe(fn(), self._loop).result(10)

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen)
        return self

    def cut(self) -> None:
        self._call(self._cut)

    def restore(self) -> None:
        self._call(self._listen)

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._cut)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._open):
            self.aborted += 1
            w.transport.abort()
        self._open.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:
            writer.transport.abort()
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer, up_writer}
        self._open |= pair
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer, self))
        finally:
            for w in pair:
                if w in self._open:
                    self._open.discard(w)
                    w.transport.abort()

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delayed: TcpProxy | None = None
    ) -> None:
        try:
            while data := await reader.read(65536):
                if delayed is not None and delayed.reply_delay_s:
                    await asyncio.sleep(delayed.reply_delay_s)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side is done: end both, like a real connection loss would.
            writer.transport.abort()
