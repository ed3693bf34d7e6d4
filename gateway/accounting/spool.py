"""The spill files: request records kept on local disk while the database cannot take them.

A spool directory holds segments, `spill-<time>-<pid>-<rand>.jsonl`, one JSON record a line
(RequestRecord.to_json). The process appending to a segment holds an exclusive flock on it; a
segment nobody holds (sealed, or left by a dead process) is replayed by whoever claims its lock first
and deleted only after every row in it is committed. Segments are never truncated in place, so a
crash at any point leaves each record either in a segment or in the database (or both: replay is
idempotent on request_id).

Everything here is blocking file I/O: call it through asyncio.to_thread.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson

from gateway.accounting.record import RequestRecord

log = logging.getLogger("switchyard.accounting")

_PREFIX = "spill-"
_SUFFIX = ".jsonl"
_PARTIAL = ".part"


def encode(records: Sequence[RequestRecord]) -> bytes:
    return b"".join(orjson.dumps(r.to_json()) + b"\n" for r in records)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._fd: int | None = None
        self._active: Path | None = None

    def append(self, records: Sequence[RequestRecord]) -> None:
        """Append to this process's segment and fsync before returning."""
        data = encode(records)
        if self._fd is None:
            self._open_segment()
        assert self._fd is not None
        try:
            _write_all(self._fd, data)
            os.fsync(self._fd)
        except OSError:
            # A partial line may now end this segment; appending after it would glue the next
            # record onto it. Start a new segment next time (the torn tail is skipped on replay).
            self.seal()
            raise

    def _open_segment(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{_PREFIX}{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}{_SUFFIX}"
        partial = self.directory / (name + _PARTIAL)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
        # Lock before the segment gets a name a replayer looks for, so none can claim it empty.
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(partial, self.directory / name)
        _fsync_dir(self.directory)
        self._fd, self._active = fd, self.directory / name

    def seal(self) -> None:
        """Close this process's segment (releasing its lock) so that it can be replayed."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = self._active = None

    def segments(self) -> list[Path]:
        """Every segment in the directory, oldest first; some may be held by live processes."""
        if not self.directory.is_dir():
            return []
        self._remove_stale_partials()
        found = self.directory.iterdir()
        return sorted(p for p in found if p.name.startswith(_PREFIX) and p.name.endswith(_SUFFIX))

    def _remove_stale_partials(self) -> None:
        # A .part file is empty (records are written only after the rename); one nobody holds is a
        # leftover from a crash between create and rename.
        for p in self.directory.glob(f"{_PREFIX}*{_PARTIAL}"):
            claim = Claim.take(p)
            if claim is not None:
                claim.remove()
                claim.release()

    def claim(self, path: Path) -> Claim | None:
        """Exclusive hold on a segment nobody else holds; None if a live process holds it."""
        return Claim.take(path)


class Claim:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self.corrupt = 0

    @classmethod
    def take(cls, path: Path) -> Claim | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Another replayer finished and deleted it between our open() and flock().
            if os.fstat(fd).st_nlink == 0:
                raise BlockingIOError
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(path, fd)

    def batches(self, size: int) -> Iterator[list[RequestRecord]]:
        """The segment's records, `size` at a time. A torn or unreadable line is counted and skipped."""
        batch: list[RequestRecord] = []
        with os.fdopen(os.dup(self._fd), "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    # The tail of a write cut short by a crash: never fsync'd, never acknowledged.
                    self.corrupt += 1
                    continue
                try:
                    batch.append(RequestRecord.from_json(orjson.loads(line)))
                except (ValueError, TypeError, KeyError) as exc:
                    self.corrupt += 1
                    log.error("skipping unreadable line in %s: %s", self.path, exc)
                    continue
                if len(batch) >= size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        _fsync_dir(self.path.parent)

    def release(self) -> None:
        os.close(self._fd)
