"""Routing-quality yardsticks, computed the way RouteLLM's evaluation does (pure functions).

Given one router score per prompt (higher = send to the strong model) and each prompt's outcome
under the weak and the strong model:
- the call-performance curve: thresholds at the 11 edges of ten equal-count bins of the score
  (`pd.qcut(scores, 10)`); at edge i a prompt goes strong when score >= edge (> for the last edge);
  each point is (share of strong calls, mean quality);
- APGR: area under that curve between the weak-only and strong-only levels, normalised (random ~0.5;
  above 1 is possible, since the strong model is not better on every prompt);
- CPT(x): the smallest share of strong calls that recovers x of the quality gap, read off the
  curve by linear interpolation at its first crossing (RouteLLM's `np.interp` over the same points
  gives the same number whenever the curve rises monotonically).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RouterMetrics:
    apgr: float
    cpt50: float
    cpt80: float
    weak_quality: float
    strong_quality: float
    curve: tuple[tuple[float, float], ...]  # (strong share 0..1, quality), by share ascending


def call_performance_curve(
    scores: np.ndarray, weak: np.ndarray, strong: np.ndarray, bins: int = 10
) -> list[tuple[float, float]]:
    scores = np.asarray(scores, dtype=np.float64)
    weak = np.asarray(weak, dtype=np.float64)
    strong = np.asarray(strong, dtype=np.float64)
    edges = np.quantile(scores, np.linspace(0.0, 1.0, bins + 1))
    points = []
    for i, edge in enumerate(edges):
        to_strong = scores > edge if i == len(edges) - 1 else scores >= edge
        points.append((float(to_strong.mean()), float(np.where(to_strong, strong, weak).mean())))
    return sorted(points)


def apgr(curve: list[tuple[float, float]], weak_quality: float, strong_quality: float) -> float:
    shares = np.array([p[0] for p in curve])
    quality = np.array([p[1] for p in curve])
    area = float(np.trapezoid(quality, shares))
    span = float(shares[-1] - shares[0])
    gap = (strong_quality - weak_quality) * span
    if gap == 0:
        return float("nan")
    return (area - weak_quality * span) / gap


def cpt(
    curve: list[tuple[float, float]], weak_quality: float, strong_quality: float, fraction: float
) -> float:
    target = weak_quality + fraction * (strong_quality - weak_quality)
    previous = curve[0]
    if previous[1] >= target:
        return previous[0]
    for point in curve[1:]:
        if point[1] >= target:
            (x0, y0), (x1, y1) = previous, point
            return x0 + (target - y0) * (x1 - x0) / (y1 - y0)
        previous = point
    return 1.0


def evaluate(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray, bins: int = 10) -> RouterMetrics:
    weak_quality = float(np.mean(weak))
    strong_quality = float(np.mean(strong))
    curve = call_performance_curve(scores, weak, strong, bins)
    return RouterMetrics(
        apgr=apgr(curve, weak_quality, strong_quality),
        cpt50=cpt(curve, weak_quality, strong_quality, 0.5),
        cpt80=cpt(curve, weak_quality, strong_quality, 0.8),
        weak_quality=weak_quality,
        strong_quality=strong_quality,
        curve=tuple(curve),
    )
