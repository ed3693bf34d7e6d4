"""Cascade routing's arithmetic (no I/O): how sure a cheap model was of its answer, and whether that
is sure enough.

The confidence of an answer is the **mean token probability** over its answer tokens:
mean(exp(logprob)) over every `choices[].logprobs.content[].logprob` the upstream returned (for a
stream, over the tokens held back before deciding). It lies in 0..1, one unsure token lowers it by
at most 1/n (where the geometric mean, exp(mean logprob), lets a single near-zero token sink a long
answer), and it is what "Language Model Cascades: Token-Level Uncertainty and Beyond" (2024) calls
the simplest competitive aggregate. The least probable token (`lowest`) is computed beside it for
the explanation, never for the decision.

The threshold is a route's `min_confidence`, or, with `escalate_fraction`, the quantile of the
recent confidences of the deployment that answered (`ConfidenceWindows`: per deployment, per
process, a bounded window), so that about that share of its answers escalates whatever the model's
calibration.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# A confidence this close to the threshold meets it: upstreams send float32-rounded logprobs, and an
# exp/log round trip must not decide a tie.
TIE = 1e-9
# Confidences kept per deployment for `escalate_fraction`, and how many before its quantile is used
# (until then nothing escalates: a quantile of a few answers says little).
WINDOW = 512
MIN_SAMPLES = 10
# Deployments tracked at once; the least recently used goes first (configs come and go live).
MAX_DEPLOYMENTS = 256


@dataclass(frozen=True, slots=True)
class Confidence:
    mean: float  # mean token probability: the score decided on
    lowest: float  # the least probable token's probability
    tokens: int


def token_logprobs(choices: Any) -> list[float]:
    """The answer tokens' logprobs of OpenAI-shaped `choices` (a chat completion's, or one stream
    chunk's): `logprobs.content[].logprob`, every choice's, in order. Anything not shaped so is skipped."""
    out: list[float] = []
    if not isinstance(choices, list):
        return out
    for choice in choices:
        logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
        content = logprobs.get("content") if isinstance(logprobs, dict) else None
        if not isinstance(content, list):
            continue
        for entry in content:
            value = entry.get("logprob") if isinstance(entry, dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                out.append(float(value))
    return out


def confidence(logprobs: Sequence[float]) -> Confidence | None:
    """None without a token to judge (an empty answer, a tool call: upstreams give no logprobs there)."""
    if not logprobs:
        return None
    probs = [math.exp(lp) for lp in logprobs]
    return Confidence(math.fsum(probs) / len(probs), min(probs), len(probs))


def strip_logprobs(data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` (a chat completion or chunk) as an upstream sends it when not asked for logprobs."""
    choices = data.get("choices")
    if not isinstance(choices, list):
        return dict(data)
    return {
        **data,
        "choices": [
            {**c, "logprobs": None} if isinstance(c, dict) and "logprobs" in c else c for c in choices
        ],
    }


class RollingQuantile:
    """The last `window` values, kept sorted beside their arrival order: add and quantile in O(window)
    memory moves, no sort per request."""

    __slots__ = ("_order", "_sorted")

    def __init__(self, window: int = WINDOW) -> None:
        self._order: deque[float] = deque(maxlen=window)
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._order)

    def add(self, value: float) -> None:
        if len(self._order) == self._order.maxlen:
            del self._sorted[bisect_left(self._sorted, self._order[0])]
        self._order.append(value)
        insort(self._sorted, value)

    def quantile(self, fraction: float) -> float:
        """The value that about `fraction` of the window lies strictly below: the k-th smallest, with
        k = floor(fraction * n), the largest for fraction 1. Raises IndexError on an empty window."""
        values = self._sorted
        return values[min(len(values) - 1, int(fraction * len(values)))]


class ConfidenceWindows:
    """Recent confidences per deployment id: one per gateway process, bounded in deployments and in
    values per deployment."""

    def __init__(self, window: int = WINDOW, max_deployments: int = MAX_DEPLOYMENTS) -> None:
        self._window = window
        self._max = max_deployments
        self._by_dep: OrderedDict[str, RollingQuantile] = OrderedDict()

    def _get(self, dep_id: str) -> RollingQuantile:
        q = self._by_dep.get(dep_id)
        if q is None:
            q = self._by_dep[dep_id] = RollingQuantile(self._window)
            if len(self._by_dep) > self._max:
                self._by_dep.popitem(last=False)
        else:
            self._by_dep.move_to_end(dep_id)
        return q

    def threshold(self, dep_id: str, fraction: float) -> tuple[float | None, int]:
        """(the `fraction` quantile of `dep_id`'s recent confidences, how many there are); None until
        MIN_SAMPLES were seen."""
        q = self._by_dep.get(dep_id)
        if q is None:
            return None, 0
        return (q.quantile(fraction) if len(q) >= MIN_SAMPLES else None), len(q)

    def add(self, dep_id: str, value: float) -> None:
        self._get(dep_id).add(value)


@dataclass(frozen=True, slots=True)
class Verdict:
    escalate: bool
    explain: str  # the cascade's part of `x-switchyard-route`


def decide(conf: Confidence | None, threshold: float | None, seen: int = MIN_SAMPLES) -> Verdict:
    """Escalate when the confidence is below the threshold (by more than TIE). No confidence (no
    logprobs came back) or no threshold yet (an `escalate_fraction` deployment with `seen` <
    MIN_SAMPLES confidences) keeps the answer."""
    if conf is None:
        return Verdict(False, "cascade=unchecked; conf=none")
    if threshold is None:
        return Verdict(False, f"cascade=kept; conf={conf.mean:.2f}; warming={seen}/{MIN_SAMPLES}")
    escalate = conf.mean < threshold - TIE
    digits = 2
    # Two places unless they would show a tie as "0.60<0.60".
    while digits < 6 and f"{conf.mean:.{digits}f}" == f"{threshold:.{digits}f}" and escalate:
        digits += 1
    c, t = f"{conf.mean:.{digits}f}", f"{threshold:.{digits}f}"
    if escalate:
        return Verdict(True, f"cascade=escalated; conf={c}<{t}")
    return Verdict(False, f"cascade=kept; conf={c}>={t}")
