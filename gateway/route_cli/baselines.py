"""Baseline routers for `route eval`, scored on the same prompts as ours (higher = send strong).

- random: uniform scores (mean over seeds);
- length: the prompt's token count (longer = harder);
- litellm: LiteLLM's rule-based complexity router (`litellm.router_strategy.complexity_router`), run
  in process with its default config and no model calls; its weighted score is the router score.
"""

from __future__ import annotations

from unittest.mock import MagicMock

import numpy as np


def random_scores(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(n)


class LiteLLMComplexity:
    """Wraps LiteLLM's ComplexityRouter; `classify` is pure (keyword and length rules), and the
    LiteLLM Router it is attached to is never called, so a stand-in object is enough."""

    def __init__(self) -> None:
        from litellm.router_strategy.complexity_router.complexity_router import ComplexityRouter

        self._router = ComplexityRouter(model_name="switchyard-eval", litellm_router_instance=MagicMock())

    def score(self, prompt: str) -> float:
        _tier, score, _signals = self._router.classify(prompt)
        return float(score)

    def scores(self, prompts: list[str]) -> np.ndarray:
        return np.array([self.score(p) for p in prompts], dtype=np.float64)
