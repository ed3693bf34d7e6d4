"""`route eval`'s pieces: the in-domain reference, the fold report and its table."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from gateway.route_cli.data import OutcomeSet
from gateway.route_cli.evaluate import in_domain_reference, run_folds
from gateway.route_cli.report import format_table, target_check, to_json
from gateway.route_cli.train import FeatureMatrix, TrainConfig, featurize
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


def _toy_sets() -> list[OutcomeSet]:
    """Three files where the word 'proof' marks the prompts only the large tier solves, plus a
    medium -> large file and a one-tier file."""
    rng = np.random.default_rng(4)
    sets = []
    for name, tiers in (
        ("a", ["small", "large"]),
        ("b", ["small", "medium", "large"]),
        ("c", ["small", "large"]),
        ("d", ["medium", "large"]),
        ("e", ["small"]),
    ):
        hard = rng.random(80) < 0.4
        prompts = [f"{name} item {i} " + ("write a proof" if h else "say hello") for i, h in enumerate(hard)]
        scores = np.column_stack(
            [rng.random(80) < (0.95 if t == "large" else np.where(hard, 0.1, 0.9)) for t in tiers]
        ).astype(float)
        sets.append(OutcomeSet(name, "toy", prompts, [f"{name}{t}" for t in tiers], scores, tiers))
    return sets


def test_report_holds_every_gap_file_a_mean_and_two_pools() -> None:
    sets = _toy_sets()
    matrices = [featurize(s.prompts) for s in sets]
    lengths = [m.prompt_tokens for m in matrices]
    report = run_folds(sets, matrices, lengths, TrainConfig(alpha=1.0), resamples=40, seed=3)
    assert [f.name for f in report.folds] == ["a", "b", "c", "d"]
    assert report.pooled.n == 320 and report.pooled_common is not None and report.pooled_common.n == 240
    assert report.folds[0].metrics["switchyard"].apgr > 0.7  # the marker transfers across files
    interval = report.mean_interval("switchyard", "apgr")
    assert interval is not None and interval.low <= report.mean("switchyard")[0] <= interval.high
    again = run_folds(sets, matrices, lengths, TrainConfig(alpha=1.0), resamples=40, seed=3)
    assert to_json(again) == to_json(report)  # seeded: same intervals
    lines = format_table(report).splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == [
        "| a",
        "| b",
        "| c",
        "| d",
        "| **LODO mean**",
        "| **pooled (mixed traffic)**",
        "| **pooled small -> large files**",
    ]
    assert " [" in lines[2]  # intervals printed
    check = target_check(report)
    assert len(check) == 3 and all(line.endswith(("PASS", "FAIL")) for line in check)
