"""The fixed bucket scheme: edges, bucket_of, and percentiles within one bucket of the exact figure."""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from itertools import pairwise

import pytest

from gateway.accounting.histogram import (
    EDGES,
    N_BUCKETS,
    OVERFLOW,
    bounds,
    bucket_of,
    difficulty_bucket,
    percentile,
    percentile_bucket,
    value_of,
)


def test_buckets_are_about_ten_percent_wide_from_1_ms_to_past_10_minutes() -> None:
    assert EDGES[0] == 1.0 and EDGES[-1] > 600_000 > EDGES[-2]
    assert len(EDGES) + 1 == N_BUCKETS and OVERFLOW == N_BUCKETS - 1
    ratios = {round(b / a, 6) for a, b in pairwise(EDGES)}
    assert ratios == {round(10 ** (1 / 24), 6)}  # ~1.1007
    for decade in (1.0, 10.0, 100.0, 1000.0):
        assert bucket_of(decade) != bucket_of(math.nextafter(decade, 0))  # decades are edges


def test_bucket_of_agrees_with_the_edges_everywhere() -> None:
    rng = random.Random(7)
    values = [0.0, -3.0, 0.999, 1.0, 599_999.0, 600_000.0, 1e12, *EDGES]
    values += [math.nextafter(e, 0) for e in EDGES] + [math.nextafter(e, math.inf) for e in EDGES]
    values += [math.exp(rng.uniform(-2, 14)) for _ in range(20_000)]
    for v in values:
        b = bucket_of(v)
        low, high = bounds(b)
        assert low <= max(v, 0.0) < high, (v, b, low, high)
        assert b == min(bisect_right(EDGES, v), OVERFLOW)


def exact(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@pytest.mark.parametrize("seed", range(6))
def test_percentiles_are_within_one_bucket_of_exact(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice([1, 2, 3, 10, 100, 5_000])
    shape = seed % 3
    if shape == 0:
        values = [math.exp(rng.gauss(6, 1.5)) for _ in range(n)]  # log-normal latencies
    elif shape == 1:
        values = [rng.uniform(0, 2_000) for _ in range(n)]
    else:  # two modes, far apart: the p50 / p95 sit in different places
        values = [rng.choice([rng.uniform(20, 40), rng.uniform(30_000, 90_000)]) for _ in range(n)]
    counts: dict[int, int] = {}
    for v in values:
        counts[bucket_of(v)] = counts.get(bucket_of(v), 0) + 1
    dense = [counts.get(b, 0) for b in range(N_BUCKETS)]
    for q in (0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        got = percentile(counts, q)
        assert got is not None and got == percentile(dense, q)
        # The very bucket of the exact (nearest-rank) figure, reported as its middle: within ~5%.
        assert bucket_of(got) == bucket_of(exact(values, q)) == percentile_bucket(counts, q)
        low, high = bounds(bucket_of(got))
        assert low <= got < high
        if 1 <= got < EDGES[-1]:
            assert abs(got / exact(values, q) - 1) < 0.051


def test_percentile_edge_cases() -> None:
    assert percentile({}, 0.5) is None and percentile([0] * N_BUCKETS, 0.99) is None
    assert percentile({0: 3}, 0.5) == 0.5
    assert percentile({OVERFLOW: 1}, 0.5) == EDGES[-1]
    assert value_of(OVERFLOW) == EDGES[-1]
    with pytest.raises(ValueError):
        percentile({1: 1}, 0)
    with pytest.raises(ValueError):
        percentile({1: 1}, 1.5)


def test_difficulty_buckets() -> None:
    assert [difficulty_bucket(d) for d in (0.0, 0.049, 0.05, 0.5, 0.999, 1.0, -1.0, 7.0)] == [
        0,
        0,
        1,
        10,
        19,
        19,
        0,
        19,
    ]
    assert difficulty_bucket(float("nan")) == 0
