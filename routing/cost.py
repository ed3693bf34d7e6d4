"""Per-candidate cost estimate: prompt tokens x input price + expected completion x output price.

The expected completion length is a log-normal prior fitted on real model responses in the
training data (RouterBench), capped by the request's `max_tokens`. Its coefficients live in the
artifact as `completion_coef` = [intercept, slope, sd] of log(completion tokens) on log(prompt
tokens). The slope is kept at 0: in that data, answer length follows the task (a letter for a
multiple-choice item, a function for a coding one), not the prompt length, and a fitted slope
extrapolates absurdly to chat prompts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_FLOOR_TOKENS = 1.0


def fit_completion_prior(completion_tokens: np.ndarray) -> np.ndarray:
    """The log-normal prior as [intercept, slope (0), sd] of log1p(completion tokens)."""
    y = np.log1p(np.maximum(np.asarray(completion_tokens, dtype=np.float64), 0.0))
    return np.array([float(y.mean()), 0.0, float(y.std())], dtype=np.float64)


@dataclass(frozen=True)
class CostModel:
    intercept: float
    slope: float
    sd: float

    @classmethod
    def from_coef(cls, coef: np.ndarray) -> CostModel:
        return cls(float(coef[0]), float(coef[1]), float(coef[2]))

    def expected_completion(self, prompt_tokens: int, max_tokens: int | None = None) -> float:
        # Mean of the fitted log-normal, not its median: cost is an expectation.
        mu = self.intercept + self.slope * math.log1p(prompt_tokens)
        expected = max(math.exp(mu + self.sd * self.sd / 2.0) - 1.0, _FLOOR_TOKENS)
        return min(expected, float(max_tokens)) if max_tokens else expected

    def estimate(
        self, prompt_tokens: int, input_per_mtok: float, output_per_mtok: float, max_tokens: int | None = None
    ) -> float:
        """Estimated USD for one call."""
        completion = self.expected_completion(prompt_tokens, max_tokens)
        return (prompt_tokens * input_per_mtok + completion * output_per_mtok) / 1e6
