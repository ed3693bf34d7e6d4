"""The limiter's pipelined Redis connection: replies reach the right callers, failures fail fast and heal."""

from __future__ import annotations

import asyncio

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.limits.resp import RespConnection, _Protocol
from tests.fakes.redis_server import fake_redis
from tests.fakes.server import closed_port


async def test_concurrent_calls_get_their_own_replies(redis_url: str, prefix: str) -> None:
    conn = RespConnection(redis_url, timeout_s=2.0)
    keys = [f"{prefix}n{i}" for i in range(200)]
    got = await asyncio.gather(*(conn.execute("INCRBY", k, i) for i, k in enumerate(keys)))
    assert got == list(range(200))
    assert await conn.execute("GET", keys[7]) == b"7"
    assert await conn.execute("GET", f"{prefix}missing") is None
    await conn.aclose()


async def test_errors_are_redis_py_types(redis_url: str) -> None:
    conn = RespConnection(redis_url)
    with pytest.raises(NoScriptError):
        await conn.evalsha("0" * 40, 0)
    with pytest.raises(ResponseError, match="unknown command") as refused:
        await conn.execute("NOSUCHCOMMAND")
    assert type(refused.value) is ResponseError
    assert await conn.execute("PING") == b"PONG"  # an error reply leaves the connection usable
    sha = await conn.script_load("return ARGV[1]")
    assert await conn.evalsha(sha, 0, "x") == b"x"
    await conn.aclose()


async def test_database_from_url(redis_url: str, prefix: str) -> None:
    assert not redis_url.endswith("/0")  # a connection that ignored the number would write to 0
    conn = RespConnection(redis_url)
    await conn.execute("SET", f"{prefix}db", "suite")
    sync = redis.Redis.from_url(redis_url)
    assert sync.get(f"{prefix}db") == b"suite"
    sync.close()
    await conn.aclose()


async def test_cancelled_caller_does_not_shift_replies(redis_url: str, prefix: str) -> None:
    conn = RespConnection(redis_url, timeout_s=2.0)
    await conn.execute("SET", f"{prefix}a", "A")
    await conn.execute("SET", f"{prefix}b", "B")
    slow = asyncio.create_task(conn.execute("BLPOP", f"{prefix}never", "0.2"))
    await asyncio.sleep(0.01)
    quick = asyncio.create_task(conn.execute("GET", f"{prefix}a"))
    await asyncio.sleep(0)
    slow.cancel()
    assert await quick == b"A"
    assert await conn.execute("GET", f"{prefix}b") == b"B"
    await conn.aclose()


async def test_silent_redis_times_out_then_heals() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await reader.read(4096):
            if n == 1:  # the first connection answers too late, and wrongly; later ones answer PONG
                await asyncio.sleep(0.3)
                writer.write(b"$4\r\nLATE\r\n" * 5)
            else:
                writer.write(b"+PONG\r\n")
        writer.close()

    async with fake_redis(handle) as url:
        conn = RespConnection(url, timeout_s=0.1)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        results = await asyncio.gather(*(conn.execute("PING") for _ in range(5)), return_exceptions=True)
        assert loop.time() - t0 < 0.5
        assert all(isinstance(r, RedisTimeoutError) for r in results)
        assert await conn.execute("PING") == b"PONG"  # a fresh connection: no late reply handed over
        await conn.aclose()


async def test_a_call_behind_answered_ones_still_times_out() -> None:
    """The one deadline timer, armed for the first call, finds it answered and re-arms for the next."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        answered = False
        while await reader.read(4096):
            if not answered:  # answers the first command, then falls silent
                writer.write(b"+PONG\r\n")
                answered = True
        writer.close()

    async with fake_redis(handle) as url:
        conn = RespConnection(url, timeout_s=0.15)
        assert await conn.execute("PING") == b"PONG"
        await asyncio.sleep(0.1)  # the timer armed for the first call fires during the second
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(RedisTimeoutError):
            await conn.execute("PING")
        assert 0.12 < loop.time() - t0 < 0.5
        await conn.aclose()


async def test_a_command_that_cannot_be_packed_leaves_no_reply_slot(redis_url: str, prefix: str) -> None:
    conn = RespConnection(redis_url, timeout_s=1.0)
    await conn.execute("SET", f"{prefix}x", "1")
    with pytest.raises(TypeError):
        await conn.execute("SET", f"{prefix}x", None)
    assert await conn.execute("GET", f"{prefix}x") == b"1"  # its own reply, not the SET's
    await conn.aclose()


async def test_a_call_on_a_closed_socket_fails_at_once() -> None:
    proto = _Protocol(timeout_s=1.0)
    proto.fail(RedisConnectionError("gone"))
    fut = asyncio.get_running_loop().create_future()
    assert proto.track(fut, 0.0) is False
    with pytest.raises(RedisConnectionError):
        fut.result()
    assert not proto.pending and proto.watch is None


async def test_dropped_connection_fails_in_flight_calls_and_redials() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            await reader.read(4096)
            writer.close()  # the server goes away mid-call
            return
        while await reader.read(4096):
            writer.write(b"+PONG\r\n")
        writer.close()

    async with fake_redis(handle) as url:
        conn = RespConnection(url, timeout_s=1.0)
        with pytest.raises(RedisConnectionError):
            await conn.execute("PING")
        assert await conn.execute("PING") == b"PONG"
        await conn.aclose()


async def test_refused_connection_is_a_connection_error() -> None:
    conn = RespConnection(f"redis://127.0.0.1:{closed_port()}/0")
    with pytest.raises(RedisConnectionError):
        await conn.execute("PING")
    await conn.aclose()


def test_urls() -> None:
    with pytest.raises(ValueError):
        RespConnection("http://127.0.0.1:6379/0")
    assert RespConnection("rediss://u:p%40ss@127.0.0.1:6380/3").tls is not None
    c = RespConnection("rediss://u:p%40ss@127.0.0.1:6380/3")
    assert (c.port, c.db, c.username, c.password) == (6380, 3, "u", "p@ss")
    u = RespConnection("unix:///run/redis.sock?db=2")
    assert (u.unix_path, u.db, u.tls) == ("/run/redis.sock", 2, None)


async def test_send_soon_rides_with_the_next_command(redis_url: str, prefix: str) -> None:
    conn = RespConnection(redis_url, timeout_s=1.0, linger_s=10.0)
    await conn.execute("PING")
    sync = redis.Redis.from_url(redis_url)
    replies: list[object] = []
    conn.send_soon(("INCRBY", f"{prefix}soon", 5), lambda f: replies.append(f.result()))
    await asyncio.sleep(0.05)
    assert sync.get(f"{prefix}soon") is None  # still queued: the linger is long
    assert await conn.execute("GET", f"{prefix}soon") == b"5"  # queued first, so applied first
    assert replies == [5]
    sync.close()
    await conn.aclose()


async def test_send_soon_without_linger_leaves_on_the_next_loop_pass(redis_url: str, prefix: str) -> None:
    """The default: one write for everything queued in this pass, sent as soon as the pass ends."""
    conn = RespConnection(redis_url, timeout_s=1.0)
    await conn.execute("PING")
    replies: list[object] = []
    for _ in range(3):
        conn.send_soon(("INCRBY", f"{prefix}pass", 2), lambda f: replies.append(f.result()))
    proto = conn._proto
    assert proto is not None and len(proto.outbox) == 3
    await asyncio.sleep(0)
    assert proto.outbox == []
    await asyncio.sleep(0.05)
    assert replies == [2, 4, 6]
    await conn.aclose()


async def test_send_soon_leaves_alone_and_before_close(redis_url: str, prefix: str) -> None:
    sync = redis.Redis.from_url(redis_url)
    conn = RespConnection(redis_url, timeout_s=1.0, linger_s=0.01)
    conn.send_soon(("INCRBY", f"{prefix}a", 1), lambda f: None)  # not yet connected: dials first
    await asyncio.sleep(0.1)
    conn.send_soon(("INCRBY", f"{prefix}a", 1), lambda f: None)
    await asyncio.sleep(0.1)
    assert sync.get(f"{prefix}a") == b"2"
    slow = RespConnection(redis_url, timeout_s=1.0, linger_s=10.0)
    await slow.execute("PING")
    slow.send_soon(("INCRBY", f"{prefix}a", 1), lambda f: None)
    await slow.aclose()  # flushes what is queued and waits for it
    assert sync.get(f"{prefix}a") == b"3"
    sync.close()
    await conn.aclose()
