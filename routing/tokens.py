"""Offline token counting with tiktoken (the entry point has run `gateway.offline.prepare_offline_env`)."""

from __future__ import annotations

import functools

import tiktoken


@functools.cache
def encoding(name: str = "o200k_base") -> tiktoken.Encoding:
    return tiktoken.get_encoding(name)


def count_tokens(text: str, name: str = "o200k_base") -> int:
    if not text:
        return 0
    return len(encoding(name).encode_ordinary(text))
