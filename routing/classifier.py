"""Difficulty classifier: a linear model over `routing.features`, loaded from the artifact.

Every prompt gets one raw `score`, higher meaning more reason to send it to a stronger tier. What it
predicts depends on the recipe that trained the artifact (`route train --target`, recorded in its
meta): the shipped `difficulty` recipe predicts a prompt's failure rate relative to others of its
benchmark; `gain` predicts how much more often a frontier model answers it than a small one; an
artifact retrained on a team's traffic (`route train --traffic`) is the prior's score corrected on
the team's judged prompts. Each tier has a success curve on that score,
P(success | tier) = sigmoid(a_tier - b_tier * score), ordered so that a higher tier never does worse.
`difficulty` is the score's percentile among the training prompts (0..1: 0.8 means a higher score
than 80% of them), which is what `x-switchyard-route` shows and what a `strong_fraction` is
calibrated against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from routing.artifact import TIERS, RouterArtifact
from routing.features import Features

# Standardised dense features are clipped to this many standard deviations: a signal that barely
# varied in training (CJK script when no training file has any) would otherwise get a huge z-score
# on the first prompt that has it, and swamp the score.
DENSE_CLIP = 4.0


@dataclass(frozen=True, slots=True)
class Prediction:
    score: float
    difficulty: float
    success: dict[str, float]


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


class DifficultyModel:
    """Inference side of the classifier; holds read-only arrays from the artifact."""

    def __init__(self, artifact: RouterArtifact) -> None:
        self._mean = artifact.dense_mean.astype(np.float64)
        self._inv_scale = 1.0 / np.maximum(artifact.dense_scale.astype(np.float64), 1e-6)
        self._w_dense = artifact.w_dense.astype(np.float64)
        self._w_hashed = artifact.w_hashed.astype(np.float64)
        self._tier_a = artifact.tier_a.astype(np.float64)
        self._tier_b = artifact.tier_b.astype(np.float64)
        self._quantiles = artifact.score_quantiles.astype(np.float64)
        self._grid = np.linspace(0.0, 1.0, self._quantiles.size)

    def score(self, features: Features) -> float:
        dense = np.clip(
            (features.dense.astype(np.float64) - self._mean) * self._inv_scale, -DENSE_CLIP, DENSE_CLIP
        )
        hashed = (
            float(self._w_hashed[features.hashed] @ features.hashed_values) if features.hashed.size else 0.0
        )
        return float(dense @ self._w_dense) + hashed

    def difficulty(self, score: float) -> float:
        return float(np.interp(score, self._quantiles, self._grid))

    def score_at(self, difficulty: float) -> float:
        """Inverse of `difficulty`: the raw score at a percentile of the training prompts."""
        return float(np.interp(difficulty, self._grid, self._quantiles))

    def success(self, score: float) -> dict[str, float]:
        return {
            tier: _sigmoid(a - b * score)
            for tier, a, b in zip(TIERS, self._tier_a, self._tier_b, strict=True)
        }

    def at(self, difficulty: float) -> Prediction:
        """The prediction for a prompt whose difficulty is known (a recorded one): the score at that
        percentile and its success probabilities. `difficulty` maps the training prompts' score range
        onto 0..1 one to one, so this is the prediction the prompt had, except for a score beyond
        that range (the difficulty saturates at 0 or 1: the score is then taken at the range's end)."""
        score = self.score_at(min(max(difficulty, 0.0), 1.0))
        return Prediction(score=score, difficulty=difficulty, success=self.success(score))

    def predict(self, features: Features) -> Prediction:
        score = self.score(features)
        return Prediction(score=score, difficulty=self.difficulty(score), success=self.success(score))
