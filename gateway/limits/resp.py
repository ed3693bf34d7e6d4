"""A pipelined Redis connection for the limiter's hot path: commands go out as they come, replies are
matched to callers in order (Redis answers one connection's commands in the order it read them).

Why not redis-py: its asyncio client checks a connection out of a pool, builds a command object and
parses through several layers on every call. Measured back to back (`python -m gateway.limits.bench`,
acquire + settle per request), redis-py took 571 us of gateway CPU per request at c=1 and 337 us at
c=32; this connection takes 307 us and 138 us. One connection carries every concurrent call, so there
is no pool to size, and settlements queued in one pass of the event loop share a socket write.

Errors are redis-py's exception types, so callers (the failover wrapper) handle one family. A timeout
or a broken socket fails every call in flight on that connection and the next call dials again: a
reply that arrives late must never be handed to the wrong caller.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Callable
from urllib.parse import parse_qs, unquote, urlparse

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.limits.model import LimitInputError

_Pending = collections.deque[tuple[asyncio.Future[object], float]]  # (future, deadline in loop time)


# Error codes that say Redis cannot serve (the fail mode decides), as opposed to a script refusing
# one request's figures. Redis 7 keeps a failed command's code in a script's error; older ones wrap
# it as `ERR Error running script ... -OOM ...`, hence the second look.
_OUTAGE_CODES = frozenset(
    (
        "OOM",
        "READONLY",
        "LOADING",
        "BUSY",
        "MASTERDOWN",
        "NOREPLICAS",
        "CLUSTERDOWN",
        "TRYAGAIN",
        "MISCONF",
        "NOAUTH",
        "WRONGPASS",
        "NOPERM",
        "MOVED",
        "ASK",
        "CROSSSLOT",
    )
)


def refusal(exc: BaseException) -> LimitInputError | None:
    """A script's error about this request (a figure out of range, `ERR value is not an integer`)
    as the request's error; None for an error that means Redis itself is unavailable."""
    if not isinstance(exc, ResponseError) or isinstance(exc, NoScriptError):
        return None
    msg = str(exc)
    lead = msg.split(maxsplit=2)[:2]  # `OOM ...`, or `ERR OOM ...` as some proxies put it
    if _OUTAGE_CODES.intersection(lead) or any(f"-{code} " in msg for code in _OUTAGE_CODES):
        return None
    err = LimitInputError(f"the rate limiter refused this request's figures ({msg})")
    err.__cause__ = exc
    return err


def _error(reply: hiredis.ReplyError) -> ResponseError:
    msg = str(reply)
    return NoScriptError(msg) if msg.startswith("NOSCRIPT") else ResponseError(msg)


class _Protocol(asyncio.Protocol):
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.reader = hiredis.Reader(notEnoughData=False)
        self.pending: _Pending = collections.deque()
        self.watch: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        # Commands queued by `send_soon`, written with the next command or when the linger ends.
        self.outbox: list[bytes] = []
        self.flush_handle: asyncio.Handle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not self.pending:
                self.fail(RedisConnectionError("Redis sent a reply nobody asked for"))
                return
            fut, _ = self.pending.popleft()
            if fut.done():  # its caller was cancelled; the reply still had to be read in turn
                continue
            if isinstance(reply, hiredis.ReplyError):
                fut.set_exception(_error(reply))
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"connection to Redis lost ({exc or 'closed by server'})"))

    def track(self, fut: asyncio.Future[object], deadline: float) -> bool:
        """Await a reply in turn; False (and `fut` failed) when the socket has already closed, since
        nothing would ever answer or time it out."""
        if self.closed:
            fut.set_exception(RedisConnectionError("the connection to Redis closed"))
            return False
        self.pending.append((fut, deadline))
        if self.watch is None:
            self.watch = asyncio.get_running_loop().call_at(deadline, self._check)
        return True

    def _check(self) -> None:
        """One timer per connection, armed for the oldest unanswered call, instead of a timer set and
        cancelled per call (in uvloop each is a libuv handle opened and closed). Calls queue in
        deadline order, up to `send_soon`'s linger, so the oldest is the first to expire."""
        self.watch = None
        if self.closed or not self.pending:
            return
        loop = asyncio.get_running_loop()
        deadline = self.pending[0][1]
        if deadline > loop.time():
            self.watch = loop.call_at(deadline, self._check)
        else:
            # Later replies on this socket can no longer be matched safely: drop it, dial afresh.
            self.fail(RedisTimeoutError(f"Redis did not answer within {self.timeout_s}s"))

    def write(self, data: bytes) -> None:
        if self.outbox:
            self.outbox.append(data)
            data = b"".join(self.outbox)
            self.outbox.clear()
        self.transport.write(data)  # type: ignore[union-attr]

    def flush(self) -> None:
        self.flush_handle = None
        if self.outbox and not self.closed:
            self.write(b"")

    def fail(self, exc: Exception) -> None:
        self.closed = True
        self.outbox.clear()
        if self.flush_handle is not None:
            self.flush_handle.cancel()
        if self.watch is not None:
            self.watch.cancel()
            self.watch = None
        while self.pending:
            fut, _ = self.pending.popleft()
            if not fut.done():
                fut.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


class RespConnection:
    """One lazily dialled, self-healing connection. `timeout_s` bounds each call's wait for its reply
    and, separately, the dial; `linger_s` is how long a `send_soon` command may wait for company.

    The default linger is none: the command leaves on the loop's next pass, after the response that
    triggered it has gone out, so Redis runs it while the client reads that response. Held for 2 ms to
    share the next request's write instead, it ran just before that request's own check, which then
    waited for it: +40 us at c=1 (gateway bench), and nothing gained at c=64, where commands issued
    in one pass share a write anyway."""

    # One connection, pipelined: replies are read in the order Redis ran the commands, so the last
    # one read is its latest state (what lets a call overlap its admission, limits/headroom.py).
    ordered_replies = True

    def __init__(self, url: str, timeout_s: float = 0.1, linger_s: float = 0.0) -> None:
        u = urlparse(url)
        if u.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"a Redis URL is redis://, rediss:// or unix://, not {url.split(':')[0]}://")
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 6379
        self.unix_path = u.path if u.scheme == "unix" else None
        query = parse_qs(u.query)
        path_db = "" if self.unix_path else u.path.lstrip("/")
        self.db = int(query["db"][0] if "db" in query else path_db or 0)
        self.tls = ssl.create_default_context() if u.scheme == "rediss" else None
        self.username = unquote(u.username) if u.username else None
        self.password = unquote(u.password) if u.password else None
        self.timeout_s = timeout_s
        self.linger_s = linger_s
        self._proto: _Protocol | None = None
        self._dialing: asyncio.Future[_Protocol] | None = None
        self._tasks: set[asyncio.Future[object]] = set()

    def _protocol(self) -> _Protocol:
        return _Protocol(self.timeout_s)

    async def _dial(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        if self.unix_path:
            _, proto = await loop.create_unix_connection(self._protocol, self.unix_path)
        else:
            _, proto = await loop.create_connection(self._protocol, self.host, self.port, ssl=self.tls)
        hello: list[tuple[object, ...]] = []
        if self.password is not None:
            auth = ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
            hello.append(auth)
        if self.db:
            hello.append(("SELECT", self.db))
        try:
            for f in [self._send(proto, cmd) for cmd in hello]:
                await f
        except BaseException:
            proto.fail(RedisConnectionError("Redis refused the connection's setup"))
            raise
        return proto

    async def _connection(self) -> _Protocol:
        proto = self._proto
        if proto is not None and not proto.closed:
            return proto
        # Concurrent callers share one dial rather than opening a socket each.
        if self._dialing is None:
            self._dialing = asyncio.ensure_future(self._dial())
            self._dialing.add_done_callback(_retrieve)
        dialing = self._dialing
        where = self.unix_path or f"{self.host}:{self.port}"
        try:
            async with asyncio.timeout(self.timeout_s):
                proto = await asyncio.shield(dialing)
        except TimeoutError as exc:
            raise RedisTimeoutError(f"connecting to Redis at {where} timed out") from exc
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis at {where} ({exc})") from exc
        finally:
            if self._dialing is dialing and dialing.done():
                self._dialing = None
        self._proto = proto
        return proto

    def _send(self, proto: _Protocol, args: tuple[object, ...]) -> asyncio.Future[object]:
        # A deadline per call, not asyncio.timeout: the reply path stays a few cheap operations.
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[object] = loop.create_future()
        # Packed before it is queued: a command that cannot be packed must not leave a reply slot.
        data = hiredis.pack_command(args)
        if proto.track(fut, loop.time() + self.timeout_s):
            proto.write(data)
        return fut

    async def execute(self, *args: object) -> object:
        proto = self._proto
        if proto is None or proto.closed:
            proto = await self._connection()
        return await self._send(proto, args)

    def send_soon(self, args: tuple[object, ...], done: Callable[[asyncio.Future[object]], None]) -> None:
        """A command whose reply nobody waits for (`done` gets its future): it leaves with the next
        command written, or on its own on the loop's next pass (after `linger_s`, if set)."""
        proto = self._proto
        if proto is None or proto.closed:
            task: asyncio.Future[object] = asyncio.ensure_future(self.execute(*args))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(done)
            return
        loop = asyncio.get_running_loop()
        data = hiredis.pack_command(args)
        fut: asyncio.Future[object] = loop.create_future()
        fut.add_done_callback(done)
        proto.track(fut, loop.time() + self.linger_s + self.timeout_s)
        proto.outbox.append(data)
        if proto.flush_handle is None:
            if self.linger_s > 0:
                proto.flush_handle = loop.call_later(self.linger_s, proto.flush)
            else:
                proto.flush_handle = loop.call_soon(proto.flush)

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: object) -> object:
        return await self.execute("EVALSHA", sha, numkeys, *keys_and_args)

    async def script_load(self, script: str) -> str:
        sha = await self.execute("SCRIPT", "LOAD", script)
        return sha.decode() if isinstance(sha, bytes) else str(sha)

    async def drain(self) -> None:
        """Sends what is queued and waits (bounded) for the replies, so the last settlements land."""
        proto = self._proto
        if proto is not None and not proto.closed:
            proto.flush()
            waiting = [fut for fut, _ in proto.pending]
            if waiting:
                await asyncio.wait(waiting, timeout=self.timeout_s + self.linger_s)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2 * self.timeout_s + self.linger_s)

    async def aclose(self) -> None:
        await self.drain()
        if self._proto is not None:
            self._proto.fail(RedisConnectionError("connection closed"))
            self._proto = None


def _retrieve(fut: asyncio.Future[object]) -> None:
    """A dial nobody waited for to the end must not log 'exception was never retrieved'."""
    if not fut.cancelled():
        fut.exception()
