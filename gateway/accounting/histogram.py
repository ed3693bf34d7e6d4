"""The fixed bucket schemes of the rollups' histograms (table hourly_histogram).

Durations (latency, time to first token), in milliseconds: 24 log-spaced buckets a decade, each
~10% wide (edges 10**(k/24) ms, so 1, 10, 100 ms... are edges), from 1 ms to ~10.3 min:

    bucket 0          [0, 1 ms)
    bucket k, 1..139  [EDGES[k - 1], EDGES[k])
    bucket 140        [EDGES[139] ~ 619 s, inf)

Difficulty (the router's 0..1 score): 20 linear buckets, 0.05 wide (1.0 lands in the last).

The schemes are part of the stored data: a changed edge would mix two meanings in one table. Add
buckets past the end or a new metric rather than move an edge.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence

PER_DECADE = 24
# Buckets 1..N_FINITE have finite edges; ceil(24 * log10(600_000 ms)) puts 10 minutes inside them.
N_FINITE = math.ceil(PER_DECADE * math.log10(600_000))
OVERFLOW = N_FINITE + 1
N_BUCKETS = OVERFLOW + 1
EDGES: tuple[float, ...] = tuple(10 ** (k / PER_DECADE) for k in range(N_FINITE + 1))

DIFFICULTY_BUCKETS = 20

# The metrics a histogram row holds, as stored in hourly_histogram.metric.
LATENCY = "latency"
TTFT = "ttft"
DIFFICULTY = "difficulty"
METRICS = (LATENCY, TTFT, DIFFICULTY)


def bucket_of(ms: float) -> int:
    """The duration bucket of `ms` milliseconds (negative counts as 0). Bisects the tabulated edges:
    exact at every edge, and cheaper than a logarithm (the spend writer calls it per record)."""
    return bisect_right(EDGES, ms)


def bounds(bucket: int) -> tuple[float, float]:
    """[low, high) of a duration bucket, in ms (high is inf for the overflow bucket)."""
    if bucket <= 0:
        return 0.0, 1.0
    if bucket >= OVERFLOW:
        return EDGES[N_FINITE], math.inf
    return EDGES[bucket - 1], EDGES[bucket]


def value_of(bucket: int) -> float:
    """The figure a duration bucket reports: its geometric middle (within ~5% of anything in it);
    0.5 ms for the first, the lower edge for the overflow bucket."""
    low, high = bounds(bucket)
    if bucket <= 0:
        return 0.5
    if math.isinf(high):
        return low
    return math.sqrt(low * high)


def percentile_bucket(counts: Mapping[int, int] | Sequence[int], q: float) -> int | None:
    """The bucket holding the nearest-rank `q` quantile (0 < q <= 1) of the counts; None when empty.

    `counts`: bucket -> count (a mapping), or a list indexed by bucket.
    """
    if not 0 < q <= 1:
        raise ValueError("q must be in (0, 1]")
    items = sorted(counts.items()) if isinstance(counts, Mapping) else list(enumerate(counts))
    total = sum(c for _, c in items)
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total - 1e-9))
    seen = 0
    for bucket, count in items:
        seen += count
        if seen >= rank:
            return bucket
    return items[-1][0]


def percentile(counts: Mapping[int, int] | Sequence[int], q: float) -> float | None:
    """The `q` quantile (e.g. 0.95) of the durations counted, in ms, from the duration buckets:
    the middle of the bucket the exact nearest-rank quantile falls in. None when nothing is counted."""
    bucket = percentile_bucket(counts, q)
    return None if bucket is None else value_of(bucket)


def difficulty_bucket(difficulty: float) -> int:
    """The difficulty bucket of a 0..1 score (clamped)."""
    if not difficulty > 0:  # also NaN
        return 0
    return min(int(difficulty * DIFFICULTY_BUCKETS), DIFFICULTY_BUCKETS - 1)


def difficulty_bounds(bucket: int) -> tuple[float, float]:
    return bucket / DIFFICULTY_BUCKETS, (bucket + 1) / DIFFICULTY_BUCKETS
