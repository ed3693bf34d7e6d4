"""Incremental detokenisation: bytes in, whole characters out, stop strings cut exactly.

A multi-byte character split across tokens is held until its last byte arrives, so a stream never
carries half a character; text that might be the start of a stop string is held until it is not."""

from __future__ import annotations

import codecs


class IncrementalDetokenizer:
    def __init__(
        self, token_bytes: list[bytes], stop: list[str] | None = None, strip_leading_space: bool = False
    ) -> None:
        self._token_bytes = token_bytes
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = [s for s in (stop or []) if s]
        self._hold = max((len(s) for s in self._stop), default=1) - 1
        self._pending = ""  # decoded but not yet released
        self._strip = strip_leading_space
        self.text = ""  # everything released so far
        self.stopped = False

    def add(self, token_id: int) -> str:
        """The text this token releases ("" while a character or a possible stop string is incomplete)."""
        if self.stopped:
            return ""
        piece = self._utf8.decode(self._token_bytes[token_id])
        if self._strip and not self.text and not self._pending:
            piece = piece.removeprefix(" ")
        return self._release(self._pending + piece, final=False)

    def flush(self) -> str:
        """At the end of the sequence: whatever was held back (a dangling byte becomes U+FFFD)."""
        if self.stopped:
            return ""
        return self._release(self._pending + self._utf8.decode(b"", final=True), final=True)

    def _release(self, text: str, final: bool) -> str:
        if self._stop:
            # A stop string can start in the released text's tail only if it were held back, so
            # searching the pending window is enough.
            cut = min((i for i in (text.find(s) for s in self._stop) if i >= 0), default=-1)
            if cut >= 0:
                self.stopped = True
                self._pending = ""
                self.text += text[:cut]
                return text[:cut]
        keep = 0 if final else min(self._hold, len(text))
        out = text[: len(text) - keep]
        self._pending = text[len(text) - keep :]
        self.text += out
        return out
