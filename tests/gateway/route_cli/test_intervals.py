"""Bootstrap intervals: each resample's figures are `routing.metrics.evaluate`'s, the draws are
seeded, and a 95% interval covers a known APGR about 95% of the time."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.route_cli.intervals import bootstrap_metrics, percentile_interval, resample_indices
from routing.metrics import evaluate


def _sample(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The score is a noisy view of whether the strong model gains on the prompt."""
    gains = rng.random(n) < 0.4
    weak = np.where(gains, 0.0, (rng.random(n) < 0.7).astype(float))
    strong = np.where(gains, 1.0, weak)
    scores = gains + rng.normal(scale=0.8, size=n)
    return scores, weak, strong


def test_each_resample_matches_the_metric_code() -> None:
    rng = np.random.default_rng(0)
    scores, weak, strong = _sample(500, rng)
    scores = np.round(scores, 1)  # ties, as prompt lengths have
    index = resample_indices([500], 7, seed=3)[0]
    index[0] = np.arange(500)
    apgr, cpt50 = bootstrap_metrics(scores, weak, strong, index)
    for b in range(7):
        m = evaluate(scores[index[b]], weak[index[b]], strong[index[b]])
        assert apgr[b] == pytest.approx(m.apgr, abs=1e-12)
        assert cpt50[b] == pytest.approx(m.cpt50, abs=1e-12)


def test_seed_fixes_the_draws() -> None:
    a = resample_indices([30, 40], 5, seed=11)
    b = resample_indices([30, 40], 5, seed=11)
    c = resample_indices([30, 40], 5, seed=12)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    assert a[1].shape == (5, 40) and a[1].max() < 40


def test_percentile_interval_of_a_normal_sample() -> None:
    values = np.random.default_rng(0).normal(size=100_000)
    interval = percentile_interval(values)
    assert interval.low == pytest.approx(-1.96, abs=0.03) and interval.high == pytest.approx(1.96, abs=0.03)


def test_coverage_of_a_known_apgr() -> None:
    truth = evaluate(*_sample(400_000, np.random.default_rng(99))).apgr
    rng = np.random.default_rng(1)
    covered = 0
    trials = 60
    for t in range(trials):
        scores, weak, strong = _sample(600, rng)
        apgr, _ = bootstrap_metrics(scores, weak, strong, resample_indices([600], 300, seed=t)[0])
        interval = percentile_interval(apgr)
        covered += interval.low <= truth <= interval.high
    assert 0.85 <= covered / trials <= 1.0
