"""Incremental server-sent-events parsing that keeps each event's exact bytes.

The Anthropic adapter's `/v1/messages` passthrough hands the upstream's bytes to the client unchanged;
the shared `providers.sse` parser yields only the parsed data (and ends lines at LF or CRLF, not a lone
CR as the SSE spec allows), so it cannot serve that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EOL = re.compile(rb"\r\n|\r|\n")


@dataclass(slots=True)
class SSEEvent:
    raw: bytes  # the event's exact bytes, through its terminating blank line
    event: str | None
    data: bytes


class SSEDecoder:
    """Incremental server-sent-events parser: events may be split across reads at any byte, and lines
    may end in \\n, \\r\\n or \\r. Keeps each event's exact bytes for passthrough."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # start of the first line not yet parsed
        self._event: str | None = None
        self._data: list[bytes] = []

    def feed(self, piece: bytes) -> list[SSEEvent]:
        self._buf += piece
        events: list[SSEEvent] = []
        while True:
            match = _EOL.search(self._buf, self._pos)
            if match is None:
                break
            if match.group() == b"\r" and match.end() == len(self._buf):
                break  # may be the first half of a \r\n split across reads
            line = bytes(self._buf[self._pos : match.start()])
            self._pos = match.end()
            if line:
                self._field(line)
                continue
            if self._data:
                raw = bytes(self._buf[: self._pos])
                events.append(SSEEvent(raw=raw, event=self._event, data=b"\n".join(self._data)))
            del self._buf[: self._pos]
            self._pos = 0
            self._event, self._data = None, []
        return events

    def flush(self) -> list[SSEEvent]:
        """At end of stream: an unterminated last event still counts (lenient where the spec drops it)."""
        if not self._buf.strip():
            return []
        return self.feed(b"\n\n")

    def _field(self, line: bytes) -> None:
        if line.startswith(b":"):
            return  # comment
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"data":
            self._data.append(value)
