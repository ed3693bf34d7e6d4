"""The cascade's measure and threshold (routing.cascade): mean token probability over the answer's
logprobs, a verdict exactly below the threshold, and the bounded rolling quantile."""

from __future__ import annotations

import math
import random

import pytest

from routing.cascade import (
    MIN_SAMPLES,
    ConfidenceWindows,
    RollingQuantile,
    confidence,
    decide,
    strip_logprobs,
    token_logprobs,
)


def _choice(*probs: float) -> dict:
    content = [
        {"token": f"t{i}", "logprob": math.log(p), "bytes": [116], "top_logprobs": []}
        for i, p in enumerate(probs)
    ]
    return {"index": 0, "message": {"role": "assistant", "content": "x"}, "logprobs": {"content": content}}


def test_the_score_is_the_mean_token_probability_and_the_lowest_is_kept_beside_it() -> None:
    conf = confidence(token_logprobs([_choice(0.9, 0.5, 0.1)]))
    assert conf is not None and conf.tokens == 3
    assert conf.mean == pytest.approx(0.5) and conf.lowest == pytest.approx(0.1)


def test_logprobs_are_read_from_every_choice_and_nonsense_is_skipped() -> None:
    odd = [
        {"logprobs": None},
        {"logprobs": {"content": None}},
        {
            "logprobs": {
                "content": [{"logprob": "x"}, {"logprob": True}, {"logprob": 0.5}, "t", {"token": "a"}]
            }
        },
        "choice",
    ]
    assert token_logprobs(odd) == []
    assert token_logprobs("nope") == []
    assert len(token_logprobs([_choice(0.5), _choice(0.5, 0.5)])) == 3
    assert confidence([]) is None


@pytest.mark.parametrize(
    ("mean", "escalate", "explain"),
    [
        (0.41, True, "cascade=escalated; conf=0.41<0.60"),
        (0.599, True, "cascade=escalated; conf=0.599<0.600"),  # no "0.60<0.60"
        (0.6, False, "cascade=kept; conf=0.60>=0.60"),
        (0.6 - 1e-12, False, "cascade=kept; conf=0.60>=0.60"),  # a float-rounding tie meets it
        (0.83, False, "cascade=kept; conf=0.83>=0.60"),
    ],
)
def test_escalation_is_exactly_below_the_threshold(mean: float, escalate: bool, explain: str) -> None:
    verdict = decide(confidence([math.log(mean)]), 0.6)
    assert (verdict.escalate, verdict.explain) == (escalate, explain)


def test_no_logprobs_or_no_threshold_yet_keeps() -> None:
    assert decide(None, 0.6).explain == "cascade=unchecked; conf=none" and not decide(None, 0.6).escalate
    warming = decide(confidence([math.log(0.2)]), None, 3)
    assert not warming.escalate and warming.explain == f"cascade=kept; conf=0.20; warming=3/{MIN_SAMPLES}"


def test_rolling_quantile_matches_a_sort_of_the_window() -> None:
    rng = random.Random(7)
    q = RollingQuantile(window=50)
    seen: list[float] = []
    for _ in range(400):
        value = round(rng.random(), 3)
        q.add(value)
        seen = [*seen, value][-50:]
        for fraction in (0.0, 0.1, 0.3, 0.5, 1.0):
            ordered = sorted(seen)
            assert q.quantile(fraction) == ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
    assert len(q) == 50


def test_windows_are_per_deployment_and_bounded() -> None:
    windows = ConfidenceWindows(window=20, max_deployments=3)
    for i in range(MIN_SAMPLES - 1):
        windows.add("a", i / 10)
    assert windows.threshold("a", 0.5) == (None, MIN_SAMPLES - 1)
    windows.add("a", 0.95)
    assert windows.threshold("a", 0.3)[0] == pytest.approx(0.3)
    assert windows.threshold("b", 0.3) == (None, 0)  # asking keeps nothing
    for _ in range(100):
        windows.add("a", 0.99)
    assert windows.threshold("a", 0.0) == (0.99, 20)
    for dep in ("c", "d", "e"):  # a fourth deployment: the least recently added to ("a") goes
        windows.add(dep, 0.5)
    assert windows.threshold("a", 0.3) == (None, 0)
    assert [windows.threshold(d, 0.3)[1] for d in ("c", "d", "e")] == [1, 1, 1]


def test_stripping_leaves_an_answer_as_if_logprobs_were_never_asked() -> None:
    data = {"id": "x", "choices": [_choice(0.5), {"index": 1, "delta": {}}], "usage": None}
    stripped = strip_logprobs(data)
    assert stripped["choices"][0]["logprobs"] is None and "logprobs" not in stripped["choices"][1]
    assert data["choices"][0]["logprobs"] is not None  # the original is left as it was
    assert strip_logprobs({"choices": None}) == {"choices": None}
