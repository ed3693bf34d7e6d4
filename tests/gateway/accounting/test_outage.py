"""PostgreSQL goes away and comes back while one writer runs (a TCP proxy in front of it is cut)."""

from __future__ import annotations

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
