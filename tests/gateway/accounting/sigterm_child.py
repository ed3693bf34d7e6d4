"""A process that submits records until SIGTERM, then stops its writer and reports what it submitted.

Run by test_sigterm.py: python -m tests.gateway.accounting.sigterm_child URL SPOOL_DIR RUN_ID
Prints "ready" once writing, then on SIGTERM one JSON line: {"acknowledged": n, "stats": {...}}.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import orjson

from gateway.accounting.writer import SpendWriter
from tests.gateway.accounting.helpers import make_record


async def main(url: str, spool: str, run: str) -> None:
    writer = SpendWriter(url, spool_dir=spool, batch_size=200, flush_interval_s=0.05)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await writer.start()
    acknowledged = 0
    print("ready", flush=True)
    while not stop.is_set():
        for _ in range(50):
            writer.submit(make_record(acknowledged, run=run))
            acknowledged += 1
        await asyncio.sleep(0.005)
    await writer.stop()
    print(orjson.dumps({"acknowledged": acknowledged, "stats": writer.stats()}).decode(), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
