"""The gateway's log format and levels, for `serve` and for each of its `--workers` processes."""

from __future__ import annotations

import logging


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Their debug output carries SQL parameters, key hashes among them.
    for noisy in ("aiosqlite", "sqlalchemy.engine", "asyncpg"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
