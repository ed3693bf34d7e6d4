"""Bootstrap intervals for `route eval`: APGR and CPT(50%) recomputed on resampled prompts.

Vectorised over resamples: a (resamples, n) index matrix is drawn once per fold from one seeded
generator, so the same draws give each fold's interval, the interval of the mean over folds (fold
b's resample b, averaged) and the pooled mixed-traffic interval (every fold's resample b, concatenated:
a stratified bootstrap that keeps the mix of datasets). Each resample's curve is built exactly as
`routing.metrics.evaluate` builds it; a test checks they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
_CHUNK = 50  # resamples per vectorised block: bounds memory at ~_CHUNK x n x 11 booleans


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def __str__(self) -> str:
        return f"[{self.low:.3f}, {self.high:.3f}]"


def resample_indices(sizes: list[int], resamples: int = RESAMPLES, seed: int = SEED) -> list[np.ndarray]:
    """One (resamples, n) matrix of indices drawn with replacement per group of size n."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, size=(resamples, n)) for n in sizes]


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> Interval:
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.nanpercentile(np.asarray(values, dtype=np.float64), [tail, 100.0 - tail])
    return Interval(float(low), float(high))


def _block_metrics(s: np.ndarray, w: np.ndarray, st: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """APGR and CPT(50%) of each row of (rows, n) score / weak / strong matrices."""
    edges = np.quantile(s, np.linspace(0.0, 1.0, bins + 1), axis=1)  # (bins + 1, rows)
    shares = np.empty((s.shape[0], bins + 1))
    quality = np.empty_like(shares)
    for i in range(bins + 1):
        edge = edges[i][:, None]
        strong_mask = s > edge if i == bins else s >= edge
        shares[:, bins - i] = strong_mask.mean(axis=1)
        quality[:, bins - i] = np.where(strong_mask, st, w).mean(axis=1)
    # Higher edges send fewer prompts strong, so reversing the edge order sorts by share ascending.
    weak_q, strong_q = w.mean(axis=1), st.mean(axis=1)
    area = np.trapezoid(quality, shares, axis=1)
    span = shares[:, -1] - shares[:, 0]
    gap = (strong_q - weak_q) * span
    with np.errstate(invalid="ignore", divide="ignore"):
        apgr = np.where(gap != 0, (area - weak_q * span) / gap, np.nan)
        target = weak_q + 0.5 * (strong_q - weak_q)
        reached = quality >= target[:, None]
        first = np.where(reached.any(axis=1), reached.argmax(axis=1), -1)
        rows = np.arange(s.shape[0])
        prev = np.maximum(first - 1, 0)
        x0, x1 = shares[rows, prev], shares[rows, np.maximum(first, 0)]
        y0, y1 = quality[rows, prev], quality[rows, np.maximum(first, 0)]
        interp = x0 + (target - y0) * (x1 - x0) / (y1 - y0)
    cpt50 = np.where(first == -1, 1.0, np.where(first == 0, shares[:, 0], interp))
    return apgr, cpt50


def bootstrap_metrics(
    scores: np.ndarray, weak: np.ndarray, strong: np.ndarray, index: np.ndarray, bins: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """APGR and CPT(50%) on each resample: `index` is (resamples, n) into the n prompts."""
    scores, weak, strong = (np.asarray(a, dtype=np.float64) for a in (scores, weak, strong))
    apgr, cpt50 = np.empty(index.shape[0]), np.empty(index.shape[0])
    for start in range(0, index.shape[0], _CHUNK):
        block = index[start : start + _CHUNK]
        apgr[start : start + len(block)], cpt50[start : start + len(block)] = _block_metrics(
            scores[block], weak[block], strong[block], bins
        )
    return apgr, cpt50
