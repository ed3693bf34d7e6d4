"""PostgreSQL goes away and comes back while one writer runs (a TCP proxy in front of it is cut)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.engine import make_url

from gateway.accounting.writer import SpendWriter
from gateway.db.engine import make_engine
from tests.gateway.accounting.helpers import (
    TcpProxy,
    assert_logged_exactly,
    expected_daily,
    fetch_daily,
    fetch_log,
    make_record,
    spill_files,
    wait_for,
)
from tests.gateway.db.databases import truncate_all


async def test_writer_rides_out_an_outage_and_catches_up_by_itself(pg_database: str, tmp_path: Path) -> None:
    direct = make_engine(pg_database)
    await truncate_all(direct)
    proxy = TcpProxy(target_port=5432)
    await proxy.up()
    via_proxy = make_url(pg_database).set(port=proxy.port).render_as_string(hide_password=False)
    writer = SpendWriter(
        via_proxy,
        spool_dir=tmp_path,
        batch_size=50,
        max_buffer=100,
        flush_interval_s=0.05,
        retry_min_s=0.05,
        retry_max_s=0.2,
    )
    records = [make_record(i) for i in range(900)]
    try:
        await writer.start()
        for r in records[:200]:
            writer.submit(r)
        await wait_for(lambda: writer.written == 200, what="the first records")

        await proxy.down()
        for r in records[200:800]:
            writer.submit(r)
        await wait_for(lambda: writer.spilled >= 400 and writer.failures > 0, what="the spill")
        assert writer.stats()["db_up"] == 0

        await proxy.up()
        await wait_for(lambda: writer.stats()["pending"] == 0, what="the catch-up")
        assert writer.replayed >= 400
        for r in records[800:]:
            writer.submit(r)
        await writer.stop()

        assert writer.written == 900
        assert_logged_exactly(await fetch_log(direct), records)
        assert await fetch_daily(direct) == expected_daily(records)
        assert spill_files(tmp_path) == []
    finally:
        await writer.stop()
        await proxy.down()
        await direct.dispose()


async def test_stop_against_a_hung_database_spills_the_batch_in_flight(
    pg_database: str, tmp_path: Path
) -> None:
    """The server accepts connections and never answers: stop() gives up on time and loses nothing."""
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    hung_url = make_url(pg_database).set(port=server.sockets[0].getsockname()[1])
    hung = make_engine(hung_url.render_as_string(hide_password=False), connect_timeout=60)
    records = [make_record(i) for i in range(300)]
    writer = SpendWriter(hung, spool_dir=tmp_path, batch_size=100, flush_interval_s=0.05, stop_timeout_s=0.5)
    try:
        await writer.start()
        for r in records:
            writer.submit(r)
        await wait_for(lambda: writer.stats()["buffered"] == 300 and held, what="a write to hang")
        await writer.stop()
        assert writer.spilled == 300 and writer.written == 0
    finally:
        server.close()
        for w in held:
            w.transport.abort()
        await hung.dispose()

    direct = make_engine(pg_database)
    try:
        await truncate_all(direct)
        follower = SpendWriter(direct, spool_dir=tmp_path)
        await follower.start()
        await follower.stop()
        assert_logged_exactly(await fetch_log(direct), records)
        assert await fetch_daily(direct) == expected_daily(records)
    finally:
        await direct.dispose()
