"""APGR / CPT on toy data whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from routing.metrics import apgr, call_performance_curve, cpt, evaluate

# Ten prompts: the weak model fails the first four, the strong one succeeds on all.
WEAK = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1], dtype=float)
STRONG = np.ones(10)


def test_curve_spans_weak_only_to_strong_only() -> None:
    curve = call_performance_curve(np.arange(10.0), WEAK, STRONG)
    assert curve[0] == (0.0, 0.6)
    assert curve[-1] == (1.0, 1.0)
    assert len(curve) == 11


def test_perfect_router_recovers_the_gap_early() -> None:
    oracle = 1.0 - WEAK  # the failing prompts score highest
    m = evaluate(oracle + np.linspace(0, 0.01, 10), WEAK, STRONG)
    # Quality reaches the strong level at 40% strong calls and stays there:
    # area = 0.6 + (0.4 * 0.4 / 2) + 0.6 * 0.4 = 0.92 -> APGR = (0.92 - 0.6) / 0.4 = 0.8.
    assert m.apgr == pytest.approx(0.8)
    assert m.cpt50 == pytest.approx(0.2)
    assert m.cpt80 == pytest.approx(0.32)


def test_inverted_router_is_worst_and_random_is_half() -> None:
    worst = evaluate(WEAK + np.linspace(0, 0.01, 10), WEAK, STRONG)
    assert worst.apgr == pytest.approx(0.2)
    assert worst.cpt50 == pytest.approx(0.8)
    rng = np.random.default_rng(0)
    weak = (rng.random(20000) < 0.6).astype(float)
    random = evaluate(rng.random(20000), weak, np.ones(20000))
    assert random.apgr == pytest.approx(0.5, abs=0.02)
    assert random.cpt50 == pytest.approx(0.5, abs=0.03)


def test_apgr_and_cpt_on_a_hand_curve() -> None:
    curve = [(0.0, 0.5), (0.5, 0.9), (1.0, 1.0)]
    # area = 0.5 * (0.5 + 0.9) / 2 + 0.5 * (0.9 + 1.0) / 2 = 0.825 -> (0.825 - 0.5) / 0.5 = 0.65
    assert apgr(curve, 0.5, 1.0) == pytest.approx(0.65)
    assert cpt(curve, 0.5, 1.0, 0.5) == pytest.approx(0.3125)
    assert cpt(curve, 0.5, 1.0, 1.0) == pytest.approx(1.0)
