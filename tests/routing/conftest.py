"""A hand-made artifact whose difficulty is just the prompt's length, so policy tests can steer it."""

from __future__ import annotations

import numpy as np
import pytest

from routing.artifact import TIERS, RouterArtifact
from routing.features import DENSE_NAMES, HASH_SIZE


def make_artifact() -> RouterArtifact:
    n = len(DENSE_NAMES)
    w_dense = np.zeros(n, dtype=np.float32)
    # score = log1p(last user tokens) - 3: a ~20-token prompt scores 0, a ~1,000-token one about 4.
    # (Scale 2, weight 2: the standardised value stays under the classifier's clip up to ~3,000 tokens.)
    dense_scale = np.ones(n, dtype=np.float32)
    dense_scale[DENSE_NAMES.index("log_last_user_tokens")] = 2.0
    w_dense[DENSE_NAMES.index("log_last_user_tokens")] = 2.0
    w_dense[DENSE_NAMES.index("bias")] = -3.0
    return RouterArtifact(
        dense_mean=np.zeros(n, dtype=np.float32),
        dense_scale=dense_scale,
        w_dense=w_dense,
        w_hashed=np.zeros(HASH_SIZE, dtype=np.float32),
        tier_a=np.array([0.0, 1.5, 2.5, 4.0], dtype=np.float32)[: len(TIERS)],
        tier_b=np.ones(len(TIERS), dtype=np.float32),
        score_quantiles=np.linspace(-2.0, 4.0, 101, dtype=np.float32),
        completion_coef=np.array([np.log(200.0), 0.0, 0.0], dtype=np.float32),
        meta={"note": "test"},
    )


@pytest.fixture
def artifact() -> RouterArtifact:
    return make_artifact()
