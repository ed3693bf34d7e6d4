"""Spend writer throughput: `python -m gateway.accounting.bench --url URL --records 50000`.

Migrates the database at URL (alembic upgrade head), submits --records synthetic records as fast as
the hot path would, stops the writer (which flushes everything) and prints records/s into the
database. Not a test: the figure depends on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from gateway.accounting.record import RequestRecord
from gateway.accounting.writer import SpendWriter
from gateway.db.engine import make_engine
from gateway.db.migrate import upgrade
from gateway.db.models import RequestLog

_MODELS = (("gpt-4o-mini", "small"), ("claude-sonnet", "large"), ("local-smollm2", "local"))


def synthetic(n: int, *, seed: int = 0) -> list[RequestRecord]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    teams = [uuid.uuid4().hex for _ in range(5)]
    keys = [uuid.uuid4().hex for _ in range(50)]
    out = []
    for _ in range(n):
        model, tier = rng.choice(_MODELS)
        key = rng.randrange(len(keys))
        prompt, completion = rng.randint(10, 4000), rng.randint(1, 1000)
        out.append(
            RequestRecord(
                request_id=uuid.uuid4().hex,
                ts=now - timedelta(seconds=rng.randint(0, 600)),
                team_id=teams[key % len(teams)],  # each key belongs to one team
                key_id=keys[key],
                requested_model="auto",
                route="auto",
                deployment=model,
                provider="openai",
                tier=tier,
                difficulty=rng.random(),
                status=200 if rng.random() > 0.02 else 502,
                error_type=None,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cached_tokens=0,
                cost_usd=Decimal(prompt * 150 + completion * 600).scaleb(-12),
                latency_ms=rng.uniform(50, 5000),
                ttft_ms=rng.uniform(10, 500),
                streamed=rng.random() < 0.5,
                fallbacks=0,
            )
        )
    return out


async def run(url: str, records: int, batch_size: int, concurrency: int | None) -> float:
    await upgrade(url)
    data = synthetic(records)
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            before = (await conn.execute(select(func.count()).select_from(RequestLog))).scalar_one()
        with tempfile.TemporaryDirectory(prefix="switchyard-bench-spool-") as spool:
            writer = SpendWriter(
                engine,
                spool_dir=spool,
                batch_size=batch_size,
                max_buffer=max(records, 50_000),
                stop_timeout_s=600,
                concurrency=concurrency,
            )
            await writer.start()
            start = time.perf_counter()
            for i, record in enumerate(data, 1):
                writer.submit(record)
                if i % 1000 == 0:
                    # The hot path yields between requests; give the flusher its turns as it would.
                    await asyncio.sleep(0)
            submitted = time.perf_counter()
            await writer.stop()
            elapsed = time.perf_counter() - start
        async with engine.connect() as conn:
            after = (await conn.execute(select(func.count()).select_from(RequestLog))).scalar_one()
    finally:
        await engine.dispose()
    if after - before != records:
        raise SystemExit(f"expected {records} new rows, found {after - before}: {writer.stats()}")
    rate = records / elapsed
    print(
        f"{records} records in {elapsed:.2f} s: {rate:,.0f} records/s into {engine.dialect.name} "
        f"(batch {batch_size}, concurrency {writer.concurrency}; "
        f"submit loop {submitted - start:.2f} s; {writer.stats()})"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="postgresql+asyncpg://... or sqlite+aiosqlite:///...")
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=None, help="batches in flight (default: writer's)")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    rates = [
        asyncio.run(run(args.url, args.records, args.batch_size, args.concurrency)) for _ in range(args.runs)
    ]
    if len(rates) > 1:
        print(f"best {max(rates):,.0f} records/s, median {sorted(rates)[len(rates) // 2]:,.0f} records/s")


if __name__ == "__main__":
    main()
