"""`serve --workers N`: uvicorn's worker supervisor, except for SIGHUP.

uvicorn's supervisor answers SIGHUP by replacing every worker with a fresh process (a restart: each
new worker loads its models and fills its caches again). Here it passes the signal on to every worker
that is serving, and each reloads its config in place (gateway/live/filewatch.py `on_sighup`), as the
single-process server does. A worker still starting is skipped: it reads the newest config anyway.
SIGINT, SIGTERM (a graceful stop), SIGTTIN/SIGTTOU and the health checks stay uvicorn's.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import signal
from typing import Any

log = logging.getLogger("uvicorn.error")


def run_workers(app: str, workers: int, **options: Any) -> None:
    """What `uvicorn.run(app, factory=True, workers=workers, **options)` does, with the supervisor below."""
    from uvicorn import Config, Server
    from uvicorn.supervisors.multiprocess import Multiprocess

    class Supervisor(Multiprocess):
        def handle_hup(self) -> None:
            log.info("Received SIGHUP: each worker reloads its config.")
            for process in list(self.processes):
                if process.pid is None or not process.process.is_alive():
                    continue
                # uvicorn >= 0.51 can tell a worker that is serving from one still starting.
                ready = getattr(process, "is_ready", None)
                if ready is not None and not ready(timeout=1):
                    continue
                try:
                    os.kill(process.pid, signal.SIGHUP)
                except ProcessLookupError:
                    continue

    config = Config(app, factory=True, workers=workers, **options)
    sock = config.bind_socket()
    # Older uvicorn releases take the worker's entry point as `target`.
    extra = {"target": Server(config).run} if "target" in inspect.signature(Multiprocess).parameters else {}
    with contextlib.suppress(KeyboardInterrupt):
        Supervisor(config, sockets=[sock], **extra).run()
