"""Run any ASGI app on 127.0.0.1 (ephemeral port) in a background thread, for tests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn


def closed_port() -> int:
    """A loopback port nobody listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """`with ServerThread(app) as srv: srv.url` — uvicorn on its own loop; stops on exit."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._sock = socket.socket()
        # Inherited by accepted sockets (asyncio sets it only on proto=IPPROTO_TCP ones): without it a
        # keep-alive client waits ~40 ms on a delayed ACK for every answer.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 5.0) -> bool:
        """True when the server (its lifespan's shutdown included) finished within `timeout_s`."""
        # A graceful exit lets the lifespan finish; open streams are cut after timeout_graceful_shutdown.
        self._server.should_exit = True
        self._thread.join(timeout=timeout_s)
        return not self._thread.is_alive()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
