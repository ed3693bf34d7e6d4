"""`serve --workers N`: one engine process per `provider: local` model, shared by every worker.

Each worker loading its own copy would multiply the model's memory by N and split the engine's
batching N ways. Instead the serving process starts, before the workers, one process per local model
running the standalone OpenAI-compatible server (local_backend.server) on a loopback port; workers
reach it through providers.local_remote.

The listening socket is bound here and handed to the engine process, so workers can connect from the
first moment (connections wait in the backlog while the engine starts), and a dead engine process
closes it (workers see the connection refused, not a hang). The engine process also holds the read end
of a pipe whose only writer is this process: when this process dies, however it dies, the pipe reads
EOF and the engine shuts itself down.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from providers.deployment import Deployment

log = logging.getLogger("switchyard.engine")

_STOP_WITHIN_S = 20.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class _Engine:
    deployment: Deployment
    url: str
    proc: subprocess.Popen[bytes]


class EngineHost:
    """The engine processes of one `serve`; `urls` is what its workers get as `local_engines`."""

    def __init__(self, engines: list[_Engine], parent_pipe: int) -> None:
        self._engines = engines
        self._parent_pipe = parent_pipe
        self._stopping = threading.Event()
        for engine in engines:
            threading.Thread(target=self._watch, args=(engine,), name="engine-watch", daemon=True).start()

    @property
    def urls(self) -> dict[str, str]:
        return {e.deployment.id: e.url for e in self._engines}

    @classmethod
    def start(cls, deployments: Sequence[Deployment], log_level: str) -> EngineHost:
        read_end, write_end = os.pipe()  # not inherited: only this process ever holds the write end
        engines = []
        try:
            for dep in deployments:
                engines.append(_spawn(dep, read_end, log_level))
        finally:
            os.close(read_end)
        return cls(engines, write_end)

    def _watch(self, engine: _Engine) -> None:
        code = engine.proc.wait()
        if not self._stopping.is_set():
            log.error(
                "local model %s: engine process %d exited with code %s; the model is unavailable",
                engine.deployment.name,
                engine.proc.pid,
                code,
            )

    def stop(self) -> None:
        """SIGTERM every engine process (they finish in-flight work), SIGKILL past a deadline."""
        self._stopping.set()
        for engine in self._engines:
            if engine.proc.poll() is None:
                engine.proc.terminate()
        for engine in self._engines:
            try:
                engine.proc.wait(_STOP_WITHIN_S)
            except subprocess.TimeoutExpired:
                log.warning("local model %s: engine process did not stop; killing it", engine.deployment.name)
                engine.proc.kill()
                engine.proc.wait()
        os.close(self._parent_pipe)


def _spawn(dep: Deployment, parent_pipe: int, log_level: str) -> _Engine:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(2048)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        args = [
            sys.executable,
            "-m",
            "gateway.engine_host",
            "--fd",
            str(sock.fileno()),
            "--parent-fd",
            str(parent_pipe),
            "--log-level",
            log_level,
            # Credentials mean nothing to the local engine and would show in the process list.
            dep.model_dump_json(exclude={"api_key", "headers"}),
        ]
        # A session of its own: Ctrl-C in a terminal reaches the workers, which drain their in-flight
        # requests through this engine, and only then does `stop()` end it.
        proc = subprocess.Popen(args, pass_fds=(sock.fileno(), parent_pipe), start_new_session=True)
    finally:
        sock.close()  # the engine process holds it now; when it dies, connections are refused
    log.info("local model %s: engine process %d listening on %s", dep.name, proc.pid, url)
    return _Engine(dep, url, proc)


def _exit_with_parent(parent_pipe: int) -> None:
    while os.read(parent_pipe, 1):
        pass
    # EOF: the serving process is gone. SIGTERM ourselves so uvicorn shuts the engine down cleanly.
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    """The engine process (started by `EngineHost`, not by hand)."""
    parser = argparse.ArgumentParser(prog="python -m gateway.engine_host")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket")
    parser.add_argument("--parent-fd", type=int, required=True, help="EOF when the parent is gone")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("deployment", help="the deployment, as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
    threading.Thread(target=_exit_with_parent, args=(args.parent_fd,), daemon=True).start()

    import uvicorn

    from local_backend.config import EngineConfig
    from local_backend.server import create_app
    from providers.local import engine_options

    dep = Deployment.model_validate_json(args.deployment)
    app = create_app(dep.model, EngineConfig.from_options(engine_options(dep)), dep.model)
    config = uvicorn.Config(
        app, log_level=args.log_level, access_log=False, timeout_graceful_shutdown=30, log_config=None
    )
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=args.fd)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
