"""A model path whose load lasts as long as a test wants: a named pipe. The loader blocks opening it
until `release` opens and closes its other end; it then finds no GGUF there and the load fails."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path


def pending_model(directory: Path) -> Path:
    path = directory / "pending.gguf"
    os.mkfifo(path)
    return path


def release(path: Path, within_s: float = 10.0) -> None:
    """End the load; a no-op when nobody is loading from `path` within `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:  # ENXIO: the loader has not opened its end yet
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                return
            time.sleep(0.01)
            continue
        os.close(fd)
        return
