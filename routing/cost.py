"""Per-candidate cost estimate: prompt tokens x input price + expected completion x output price.

The expected completion length is a log-linear prior in the prompt length, fitted on real model
responses in the training data (RouterBench), capped by the request's `max_tokens`. The prior's
coefficients live in the artifact as `completion_coef` = [intercept, slope, residual sd] of
log(completion tokens) on log(prompt tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_FLOOR_TOKENS = 1.0


def fit_completion_prior(prompt_tokens: np.ndarray, completion_tokens: np.ndarray) -> np.ndarray:
    """Least squares of log1p(completion) on log1p(prompt); returns [intercept, slope, sd]."""
    x = np.log1p(np.asarray(prompt_tokens, dtype=np.float64))
    y = np.log1p(np.maximum(np.asarray(completion_tokens, dtype=np.float64), 0.0))
    design = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    sd = float(np.std(y - design @ coef))
    return np.array([coef[0], coef[1], sd], dtype=np.float64)


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
