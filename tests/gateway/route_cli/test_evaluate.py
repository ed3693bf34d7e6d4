"""The in-domain reference of `route eval`: out-of-fold scores from the file's own labels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from gateway.route_cli.evaluate import FoldResult, format_reference, in_domain_reference
from gateway.route_cli.train import FeatureMatrix, TrainConfig
from routing.features import DENSE_NAMES, HASH_SIZE
from routing.metrics import evaluate

N = 600


def _matrix(marked: np.ndarray) -> FeatureMatrix:
    """Prompts whose one hashed bucket is 1 where `marked`, with noise in the dense block."""
    rng = np.random.default_rng(1)
    rows = np.flatnonzero(marked)
    hashed = sparse.csr_matrix(
        (np.ones(rows.size), (rows, np.full(rows.size, 7))), shape=(marked.size, HASH_SIZE)
    )
    return FeatureMatrix(rng.normal(size=(marked.size, len(DENSE_NAMES))), hashed, np.ones(marked.size))


def _outcomes(marked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The weak model fails the marked prompts that the strong one solves; elsewhere they agree."""
    rng = np.random.default_rng(2)
    strong = (rng.random(marked.size) < 0.8).astype(float)
    weak = np.where(marked, 0.0, strong)
    return weak, strong


def test_learnable_gain_is_recovered_out_of_fold() -> None:
    marked = np.random.default_rng(0).random(N) < 0.3
    weak, strong = _outcomes(marked)
    reference = in_domain_reference(_matrix(marked), weak, strong, TrainConfig())
    knowing = evaluate(marked.astype(float), weak, strong)  # ranks by the marker itself
    assert reference.apgr == pytest.approx(knowing.apgr, abs=0.03)
    assert reference.apgr > 0.8
    assert reference.cpt50 < 0.2


def test_features_unrelated_to_the_gain_give_random_routing() -> None:
    marked = np.random.default_rng(0).random(N) < 0.3
    weak, strong = _outcomes(marked)
    unrelated = _matrix(np.random.default_rng(3).random(N) < 0.3)
    assert in_domain_reference(unrelated, weak, strong, TrainConfig()).apgr == pytest.approx(0.5, abs=0.12)


def test_reference_table_has_a_row_per_routing_fold_and_a_mean() -> None:
    weak = np.array([0.0, 1.0, 0.0, 1.0])
    strong = np.array([1.0, 1.0, 1.0, 0.0])
    ours = evaluate(np.array([0.9, 0.1, 0.8, 0.2]), weak, strong)
    ref = evaluate(np.array([0.1, 0.9, 0.2, 0.8]), weak, strong)
    results = [
        FoldResult("a", True, 4, "w", "s", {"switchyard": ours}, ref),
        FoldResult("b", True, 4, "w", "s", {"switchyard": ref}, ours),
        FoldResult("7b", False, 4, "w", "s", {"switchyard": ours}, None),
    ]
    lines = format_reference(results).splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| a", "| b", "| **mean**"]
    mean_apgr = (ours.apgr + ref.apgr) / 2
    assert lines[-1].split(" | ")[1] == f"{mean_apgr:.3f}" == lines[-1].split(" | ")[3]
