"""The count cache gives tiktoken's counts and stays within its bound."""

from __future__ import annotations

from routing.tokens import CountCache, count_tokens


def test_cached_counts_are_tiktokens() -> None:
    cache = CountCache()
    text = "You are a careful assistant. Answer in French. " * 20
    assert cache.count(text) == count_tokens(text) == cache.count(text)
    assert cache.count("") == 0


def test_oldest_texts_leave_first_and_the_bound_holds() -> None:
    cache = CountCache(max_chars=100, max_text=60)
    texts = [f"{i:02d} " + "word " * 8 for i in range(5)]  # 43 characters each
    for t in texts:
        assert cache.count(t) == count_tokens(t)
    held = list(cache._counts)
    assert held == texts[-2:] and cache._chars == sum(map(len, held)) <= 100
    long = "x " * 40  # over max_text: counted, not kept
    assert cache.count(long) == count_tokens(long) and long not in cache._counts
