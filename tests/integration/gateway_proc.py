"""Gateway processes and a cuttable TCP proxy for the integration tests.

MASTER_KEY       the master key every GatewayProcess is started with
free_port        a loopback port nobody listens on
GatewayProcess   `python -m gateway.cli serve` as a subprocess, stdout/stderr to files
TcpProxy         a loopback TCP proxy whose connections can be cut, to take PostgreSQL (or Redis) "down"
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

import httpx

from tests.fakes.server import closed_port

# The checkout these tests belong to: the gateway subprocess imports its code from here, not from
# wherever the package happens to be installed (another checkout's editable install, say).
REPO_ROOT = Path(__file__).resolve().parents[2]

MASTER_KEY = "sk-master-integration-test"


def free_port() -> int:
    return closed_port()


# --------------------------------------------------------------------------- gateway subprocesses


class GatewayProcess:
    """`switchyard serve` in a subprocess on 127.0.0.1:<free port>, stdout and stderr to files.

    `config` None: the embedded defaults (no --config; run it in a `workdir` without switchyard.yaml);
    `master_key` None: no authentication."""

    def __init__(
        self,
        name: str,
        config: Path | None,
        workdir: Path,
        env: dict[str, str],
        *,
        extra_args: tuple[str, ...] = (),
        master_key: str | None = MASTER_KEY,
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
            "PYTHONPATH": str(REPO_ROOT),
            "SWITCHYARD_SPOOL_DIR": str(self.spool_dir),
            "SWITCHYARD_LOCAL_MODEL": "false",
            **({"SWITCHYARD_MASTER_KEY": master_key} if master_key is not None else {}),
            **env,
        }
        self.args = [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            *(("--config", str(config)) if config is not None else ()),
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
